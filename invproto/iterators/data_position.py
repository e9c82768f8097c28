"""A resumed run sees the batches an uninterrupted run would have seen from its step on.

edflow restarts a resumed run at epoch ``step // batches_per_epoch`` but
neither skips the batches of that epoch already trained nor knows which
example order the epoch had. :class:`invproto.data.batches.ArrayBatches` draws
the order of each ``reset()`` from the key ``(number of resets so far,)``;
edflow's loop resets the train batches twice per epoch (at its start and
before the evaluation) after the one reset at construction, so epoch ``e`` of
an uninterrupted run trains on order ``1 + 2 e``. :func:`continue_data_order`
sets a resumed run's train batches to that order and skips the batches already
done (:meth:`~invproto.data.batches.ArrayBatches.resume_at`), so that kill +
resume ends with the weights of an uninterrupted run. Batches of other kinds
(chainer's iterator, for datasets without ``get_batch``) keep edflow's
behaviour.
"""

from __future__ import annotations

from invproto.data.batches import ArrayBatches

RESETS_PER_EPOCH = 2  # edflow's PyHookedModelIterator._iterate: before the epoch and before its evaluation


def continue_data_order(train_batches, global_step: int) -> bool:
    """Make the next epoch of ``train_batches`` continue at ``global_step``; False if they cannot."""
    if global_step <= 0 or not isinstance(train_batches, ArrayBatches):
        return False
    epoch, done = divmod(global_step, len(train_batches))
    train_batches.resume_at(1 + RESETS_PER_EPOCH * epoch, done * train_batches.batch_size)
    return True
