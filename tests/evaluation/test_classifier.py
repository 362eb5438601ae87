"""The dataset classifier: accurate on held-out digits, cached after the first training, alignment by class."""

import numpy as np

from gen_jax.data import make_source
from gen_jax.evaluation.classifier import alignment, get_classifier
from tests.helpers import tiny_ddpm_config


def test_classifier_is_accurate_cached_and_scores_alignment(classifier_cache):
  data = tiny_ddpm_config().data  # digits at 8x8, as the tiny text tests sample them
  classifier = get_classifier(data, classifier_cache)
  assert classifier.test_accuracy > 0.93, classifier.test_accuracy
  again = get_classifier(data, classifier_cache)  # loaded, not retrained
  assert again.test_accuracy == classifier.test_accuracy

  config = data.copy_and_resolve_references()
  config.split = 'test'
  test = make_source(config)
  np.testing.assert_array_equal(again.predict(test.images), classifier.predict(test.images))
  scores = alignment(classifier, test.images, test.labels)
  predicted = classifier.predict(test.images)
  for k in range(10):
    assert scores[k] == np.mean(predicted[test.labels == k] == k)
  # images "prompted" as class 3 that are all real threes align far better than real sevens labelled 3
  threes, sevens = test.images[test.labels == 3], test.images[test.labels == 7]
  assert alignment(classifier, threes, np.full(len(threes), 3))[3] > 0.8
  assert alignment(classifier, sevens, np.full(len(sevens), 3))[3] < 0.2


def test_parameter_names_stay_those_of_cached_classifiers():
  """Caches outlive code: the head must stay 'Dense_0' (built first), or an old cache fails to load."""
  import jax
  import jax.numpy as jnp

  from gen_jax.evaluation.classifier import CNN
  params = CNN(10).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))['params']
  assert params['Dense_0']['kernel'].shape == (128, 10) and params['Dense_1']['kernel'].shape[1] == 128


def test_evaluators_started_together_train_the_classifier_once(tmp_path, monkeypatch):
  """A sweep's members evaluate at once on a fresh cache: one trains (here a stand-in that takes a while), the
  other waits for the lock and loads what it saved."""
  import threading
  import time

  import jax
  import jax.numpy as jnp

  from gen_jax.evaluation import classifier as classifier_lib
  trained = []

  def slow_train(data_config, steps, seed):
    trained.append(seed)
    time.sleep(0.5)  # the other evaluator arrives while this one trains
    model = classifier_lib.CNN(10)
    return classifier_lib.Classifier(model, model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 1)))['params'],
                                     0.5)

  monkeypatch.setattr(classifier_lib, 'train_classifier', slow_train)
  data, got = tiny_ddpm_config().data, []
  threads = [threading.Thread(target=lambda: got.append(get_classifier(data, str(tmp_path)))) for _ in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert trained == [0] and len(got) == 2 and {c.test_accuracy for c in got} == {0.5}
  for a, b in zip(jax.tree.leaves(got[0].params), jax.tree.leaves(got[1].params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix != '.lock') == ['.json', '.msgpack']  # no temps
