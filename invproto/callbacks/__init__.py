"""Evaluation callbacks run by edflow after each epoch and by `edflow -p`."""
