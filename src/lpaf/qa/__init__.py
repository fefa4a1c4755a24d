"""Extractive question answering (SQuAD v1.1): data from the official JSON files,
the official metrics, feature windows and answer post-processing.

* :mod:`lpaf.qa.metrics`: exact match and F1 exactly as the official v1.1 evaluation
  script defines them;
* :mod:`lpaf.qa.data`: the official JSON format read and checked, and the offline
  proxy split of the dev file by article;
* :mod:`lpaf.qa.features`: question + context windows with ``doc_stride``, their
  start/end labels, and the n-best span search over every window of an example.
"""
