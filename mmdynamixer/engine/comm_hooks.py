"""A DDP gradient reduction whose result does not depend on DDP's bucket layout, so that a resumed run reduces
its first iteration to the same bits as the uninterrupted run did.

DDP rebuilds its gradient buckets after a process's first iteration, in the order the gradients became ready
(``torch/nn/parallel/distributed.py``, ``_rebuild_buckets``). A resumed run's first iteration therefore reduces
with the initial layout where the uninterrupted run used the rebuilt one, and a ring all-reduce sums an element
over the processes in an order that depends on its position in the bucket: with more than two processes the
floating-point sums then differ in the last bits (two numbers add the same in either order).
"""
import torch
import torch.distributed as dist


def rank_ordered_allreduce(process_group, bucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook (``DistributedDataParallel.register_comm_hook(None, rank_ordered_allreduce)``):
    the mean of the bucket's gradients over the processes, gathered and summed in rank order, the same bits
    whatever the bucket layout. Moves ``world_size`` copies of each bucket where an all-reduce moves about two."""
    group = process_group if process_group is not None else dist.group.WORLD
    tensor = bucket.buffer()
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    work = dist.all_gather(gathered, tensor, group=group, async_op=True)

    def mean_in_rank_order(_) -> torch.Tensor:
        total = gathered[0].clone()
        for other in gathered[1:]:
            total += other
        return total.div_(len(gathered))

    return work.get_future().then(mean_in_rank_order)
