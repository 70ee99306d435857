"""Recipes shipped with the library (installed as ``distill.recipes``): ``base/`` holds what every run
shares; each data set's folder overrides only what differs. Composed with repeated ``--config``::

    distill fit --config recipes/base/student.yaml --config recipes/trashnet/student.yaml
"""
