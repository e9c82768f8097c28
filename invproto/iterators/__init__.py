"""Iterators: the training and evaluation logic edflow runs, one per model family."""
