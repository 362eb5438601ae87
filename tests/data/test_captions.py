"""Captions: the templates and fixed prompts per dataset, and caption ids drawn per example and epoch in grain."""

import numpy as np

from gen_jax.data import make_source
from gen_jax.data.captions import DIGIT_NAMES, caption_table
from gen_jax.data.pipeline import make_train_dataset
from tests.helpers import tiny_ddpm_config


def test_digit_captions_and_fixed_prompts():
  table = caption_table('digits', DIGIT_NAMES)
  t = table.num_templates
  assert table.captions[7 * t] == 'a handwritten digit seven'
  assert 'the number 7' in table.captions[7 * t:8 * t] and 'the number 8' not in table.captions[7 * t:8 * t]
  assert table.prompts[7] == 'a handwritten digit seven' and len(table.prompts) == 10
  assert len(set(table.captions)) == 10 * t
  assert table.label_of('The  number 8') == 8 and table.label_of('seven') == 7 and table.label_of('a cat') is None


def test_photo_captions_use_the_right_article():
  table = caption_table('cifar10', ('airplane', 'cat'))
  assert table.prompts == ('a photo of an airplane', 'a photo of a cat')
  fashion = caption_table('fashion_mnist', ('t-shirt/top', 'sneaker'))
  assert 'a black and white photo of a sneaker' in fashion.captions


def test_caption_ids_name_the_label_vary_per_epoch_and_leave_images_unchanged():
  source = make_source(tiny_ddpm_config().data)
  t = caption_table('digits', source.class_names).num_templates
  plain = make_train_dataset(source, seed=0, global_batch_size=50)
  captioned = make_train_dataset(source, seed=0, global_batch_size=50, caption_templates=t)
  epoch = len(source) // 50  # 1500 examples: batch k and k + 30 hold the same examples, reshuffled
  first, second = captioned[0], captioned[epoch]
  np.testing.assert_array_equal(first['image'], plain[0]['image'])
  assert 'caption' not in plain[0]
  for batch in (first, second):
    np.testing.assert_array_equal(batch['caption'] // t, batch['label'])
  assert len(np.unique(first['caption'] % t)) == t  # every template drawn
  again = make_train_dataset(source, seed=0, global_batch_size=50, caption_templates=t)
  np.testing.assert_array_equal(again[0]['caption'], first['caption'])  # deterministic from the seed
  # the same example gets other templates in other epochs
  ids = {}
  for k in range(3 * epoch):
    b = captioned[k]
    for image, caption in zip(b['image'][0], b['caption'][0]):
      ids.setdefault(image.tobytes(), set()).add(int(caption))
  assert np.mean([len(v) > 1 for v in ids.values()]) > 0.5


def test_free_text_captions_travel_as_tokens():
  from gen_jax.data.sources import ImageSource
  from gen_jax.text.tokenizer import Tokenizer

  texts = ['a red square', 'two blue circles on a very long and winding road', 'a cat']
  records = [{'image': np.full((4, 4, 1), i, np.uint8), 'label': i, 'caption': t.encode()} for i, t in
             enumerate(texts)]
  source = ImageSource(records, None, ('a', 'b', 'c'), (4, 4, 1), caption_key='caption')
  tokenizer = Tokenizer(6)
  batch = make_train_dataset(source, seed=0, global_batch_size=3, tokenize=tokenizer.one)[0]
  assert batch['tokens'].shape == (1, 3, 6) and batch['token_mask'].dtype == bool
  for tokens, mask, label in zip(batch['tokens'][0], batch['token_mask'][0], batch['label'][0]):
    expected = tokenizer([texts[label]])
    np.testing.assert_array_equal(tokens, expected['tokens'][0])
    np.testing.assert_array_equal(mask, expected['token_mask'][0])
