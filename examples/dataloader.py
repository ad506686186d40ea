"""Our pipe inside torch's DataLoader (batch_size=None: batches are ready-made).

Run: python examples/dataloader.py
"""

from torch.utils.data import DataLoader

from salient_pipes import FastDataset, salient_pipeline


def main(num_nodes: int = 20_000) -> tuple:
    ds = FastDataset.synthetic(num_nodes=num_nodes, seed=0)
    pipe = salient_pipeline(ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu")
    loader = DataLoader(pipe, batch_size=None)
    seeds = sum(batch.batch_size for batch in loader)
    print(f"{len(loader)} batches, {seeds} seeds")
    return len(loader), seeds


if __name__ == "__main__":
    main()
