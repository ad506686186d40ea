"""Data-parallel GraphSAGE with DistributedDataParallel, one process per GPU
(NCCL) or per CPU worker (gloo).

    torchrun --nproc-per-node 4 examples/ddp_train.py --dataset ogbn-products --root data
    torchrun --nproc-per-node 2 examples/ddp_train.py            # CPU, synthetic graph

Each process builds its own pipeline; salient_pipeline() reads rank and world
size from the process group, so every rank trains on a disjoint shard of
each epoch with the same number of batches. Evaluation is sharded the same
way and its counts all-reduced. Only rank 0 prints.
"""

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from salient_pipes import SAGE, FastDataset, batchwise_test, salient_pipeline, train_epoch
from salient_pipes.distributed import process_group


def train(args: argparse.Namespace, device: torch.device) -> None:
    """One process's training; its DDP model is freed when this returns,
    before the process group is destroyed (see process_group)."""
    lead = dist.get_rank() == 0
    local_rank = device.index
    if args.dataset == "synthetic":
        dataset = FastDataset.synthetic(num_nodes=args.num_nodes, seed=0)
    else:
        dataset = FastDataset.from_path(args.root, args.dataset, progress=lead)
    torch.manual_seed(0)  # the same initial weights on every rank
    core = SAGE(dataset.num_features, args.hidden, dataset.num_classes, num_layers=3).to(device)
    device_ids = [local_rank] if device.type == "cuda" else None
    model = DistributedDataParallel(core, device_ids=device_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(dataset, "train", fanouts=(15, 10, 5), device=device)

    for epoch in range(args.epochs):
        pipe.set_epoch(epoch)
        result = train_epoch(model, pipe, optimizer, progress=lead, desc=f"epoch {epoch}")
        acc = batchwise_test(core, dataset, (20, 20, 20), sets=("valid",), progress=lead)
        if lead:
            print(f"epoch {epoch}: loss {result.loss:.4f} (rank 0's shard), "
                  f"{result.seconds:.2f} s, valid {acc['valid']:.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic",
                        help="an OGB node-property dataset under --root, or synthetic")
    parser.add_argument("--root", default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-nodes", type=int, default=50_000,
                        help="size of the synthetic graph")
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    # NCCL with one GPU per process (cuda:LOCAL_RANK), gloo on CPUs.
    with process_group() as device:
        train(args, device)


if __name__ == "__main__":
    main()
