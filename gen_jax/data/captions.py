"""Captions for labelled image datasets: templates per dataset, one fixed evaluation prompt per class.

Why a finite table: a templated caption is (label, template) drawn per example and per epoch from the data seed,
so it travels through grain as one int (`caption` = label * num_templates + template) and resume stays exact;
a frozen encoder encodes the whole table once instead of every step. All templates live here.

Template fields: {name} the readable class name ("seven", "sneaker"), {a_name} with its article ("an airplane"),
{digit} the numeral of digit classes ("7").
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')

DIGIT_TEMPLATES = (
    'a handwritten digit {name}',
    'the number {digit}',
    'the digit {name}',
    'a handwritten {digit}',
    'a drawing of the number {name}',
    'a black and white image of the digit {digit}',
)
PHOTO_TEMPLATES = (
    'a photo of {a_name}',
    'a black and white photo of {a_name}',
    'a low resolution photo of {a_name}',
    'a picture of {a_name}',
    'an image of the {name}',
    'a small photo of {a_name}',
)
COLOUR_PHOTO_TEMPLATES = (
    'a photo of {a_name}',
    'a blurry photo of {a_name}',
    'a low resolution photo of {a_name}',
    'a picture of {a_name}',
    'an image of the {name}',
    'a small photo of {a_name}',
)

# dataset name -> (templates, evaluation template). Unknown datasets get the photo templates.
TEMPLATES = {
    'digits': (DIGIT_TEMPLATES, 'a handwritten digit {name}'),
    'mnist': (DIGIT_TEMPLATES, 'a handwritten digit {name}'),
    'fashion_mnist': (PHOTO_TEMPLATES, 'a photo of {a_name}'),
    'cifar10': (COLOUR_PHOTO_TEMPLATES, 'a photo of {a_name}'),
}


def _article(name: str) -> str:
  return ('an ' if name[:1].lower() in 'aeiou' else 'a ') + name


@dataclasses.dataclass(frozen=True)
class CaptionTable:
  """Every caption of a dataset: `captions[label * num_templates + template]`; `prompts[label]` for evaluation."""
  class_names: tuple[str, ...]
  templates: tuple[str, ...]
  eval_template: str

  @property
  def num_templates(self) -> int:
    return len(self.templates)

  def _fill(self, template: str, label: int) -> str:
    name = self.class_names[label]
    return template.format(name=name, a_name=_article(name), digit=label)

  @property
  def captions(self) -> tuple[str, ...]:
    return tuple(self._fill(t, label) for label in range(len(self.class_names)) for t in self.templates)

  @property
  def prompts(self) -> tuple[str, ...]:
    """The fixed evaluation prompt of each class ("a handwritten digit seven")."""
    return tuple(self._fill(self.eval_template, label) for label in range(len(self.class_names)))

  def label_of(self, prompt: str) -> int | None:
    """The class a prompt names, when it is one of this table's captions or prompts (case and spaces ignored)."""
    key = ' '.join(prompt.lower().split())
    for i, caption in enumerate(self.captions):
      if caption.lower() == key:
        return i // self.num_templates
    for label, prompt_i in enumerate(self.prompts):
      if prompt_i.lower() == key or self.class_names[label].lower() == key:
        return label
    return None


def caption_table(dataset: str, class_names: Sequence[str]) -> CaptionTable:
  """The caption table of a dataset (by TFDS-style name: digits, mnist, fashion_mnist, cifar10, ...)."""
  templates, eval_template = TEMPLATES.get(dataset, (PHOTO_TEMPLATES, 'a photo of {a_name}'))
  return CaptionTable(tuple(class_names), tuple(templates), eval_template)
