"""Map a function over tensors on worker threads that each run one intra-op thread.

Used by the oneDNN Inception path (:mod:`invproto.fid.fused`): single-threaded
workers never wait for each other inside an operation, which keeps small
chunks fast when other processes compete for the cores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch


def map_on_single_threaded_workers(function: Callable[[torch.Tensor], torch.Tensor], items: Sequence[torch.Tensor],
                                   workers: int) -> list[torch.Tensor]:
    """``[function(item) for item in items]``, computed by ``workers`` threads of one intra-op thread each.

    Each worker takes the next item until none is left, in inference mode.
    ``torch.set_num_threads`` sizes the calling thread's OpenMP team (what a
    worker needs) but also sets the process-wide default for threads started
    later, so the caller's setting is restored once every worker has set its
    own. A worker's exception is re-raised here.
    """
    saved_threads = torch.get_num_threads()
    ready = threading.Barrier(workers + 1)
    results: list[torch.Tensor | None] = [None] * len(items)
    errors: list[BaseException] = []
    next_index = iter(range(len(items)))
    taking = threading.Lock()

    def work() -> None:
        try:
            torch.get_num_threads()  # this thread's lazy initialisation first, then its own team of one
            torch.set_num_threads(1)
            ready.wait()
            with torch.inference_mode():
                while not errors:
                    with taking:
                        i = next(next_index, None)
                    if i is None:
                        return
                    results[i] = function(items[i])
        except BaseException as error:  # noqa: BLE001 -- handed to the caller
            errors.append(error)
            ready.abort()

    threads = [threading.Thread(target=work, name=f"inception-worker-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed before starting: its error is raised below
    finally:
        torch.set_num_threads(saved_threads)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
