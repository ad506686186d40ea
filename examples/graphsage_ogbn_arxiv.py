"""GraphSAGE on ogbn-arxiv (or any OGB node-property dataset) the idiomatic
way: salient_pipeline() + train_epoch + batchwise_test.

Run: python examples/graphsage_ogbn_arxiv.py --root data [--dataset ogbn-products]
The first run downloads and converts the dataset; later runs open the
converted copy in seconds.
"""

import argparse

import torch

from salient_pipes import SAGE, FastDataset, batchwise_test, salient_pipeline, train_epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ogbn-arxiv")
    parser.add_argument("--root", default="data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    dataset = FastDataset.from_path(args.root, args.dataset)
    pipe = salient_pipeline(dataset, "train", batch_size=1024, fanouts=(15, 10, 5),
                            device=args.device)
    device = pipe.device  # the pipeline's last stage knows where batches land
    model = SAGE(dataset.num_features, 256, dataset.num_classes, num_layers=3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        pipe.set_epoch(epoch)
        result = train_epoch(model, pipe, optimizer, desc=f"epoch {epoch}")
        acc = batchwise_test(model, dataset, (20, 20, 20), sets=("valid",), device=device)
        print(f"epoch {epoch}: loss {result.loss:.4f}, {result.seconds:.2f} s, "
              f"valid {acc['valid']:.4f}")
    print(batchwise_test(model, dataset, (20, 20, 20), sets=("valid", "test"), device=device))


if __name__ == "__main__":
    main()
