"""SALIENT's GraphSAGE tutorial on salient_pipes: the tutorial's code with
only its imports changed (and the device picked by availability).

Run: python examples/salient_tutorial.py [--dataset ogbn-arxiv --root data] [--epochs 10]
The default dataset is the built-in arxiv-sized synthetic graph (no download).
"""

import argparse

import torch
import torch.nn.functional as F
from torch_geometric.nn import SAGEConv
from tqdm import tqdm

from salient_pipes.adapters.salient import *  # noqa: F403  (was: driver.dataset, fast_trainer.*)


def init_weights(m):
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(m.weight, gain=torch.nn.init.calculate_gain("relu"))


class SAGE(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels, num_layers):
        super().__init__()
        kwargs = dict(bias=False, normalize=True)
        self.num_layers = num_layers
        self.convs = torch.nn.ModuleList([SAGEConv(in_channels, hidden_channels, **kwargs)])
        for _ in range(num_layers - 2):
            self.convs.append(SAGEConv(hidden_channels, hidden_channels, **kwargs))
        self.convs.append(SAGEConv(hidden_channels, out_channels, **kwargs))
        for conv in self.convs:
            conv.reset_parameters()
            conv.apply(init_weights)

    def forward(self, x, adjs):
        x = F.normalize(x.to(torch.float), dim=-1)
        for i, (edge_index, _, size) in enumerate(adjs):
            x = self.convs[i]((x, x[: size[1]]), edge_index)
            if i != self.num_layers - 1:
                x = F.dropout(F.relu(x), p=0.5, training=self.training)
        return torch.log_softmax(x, dim=-1)


@torch.no_grad()
def batchwise_test(model, dataset, test_fanouts, test_batch_size, sets=None):
    model.eval()
    results = {}
    for name in sets if sets is not None else dataset.split_idx:
        cfg = FastSamplerConfig(  # noqa: F405
            x=dataset.x, y=dataset.y.unsqueeze(-1), rowptr=dataset.rowptr, col=dataset.col,
            idx=dataset.split_idx[name], batch_size=test_batch_size, sizes=test_fanouts,
            skip_nonfull_batch=False, pin_memory=True)
        loader = FastSampler(20, 40, cfg)  # noqa: F405
        devit = DevicePrefetcher(devices, iter(loader))  # noqa: F405
        pbar = tqdm(total=cfg.idx.numel(), desc="Batchwise eval")
        with Timer((name, "Compute")) as timer:  # noqa: F405
            correct, total = test.batchwise_test(  # noqa: F405
                model, len(loader), devit, lambda batch, bar=pbar: bar.update(batch.batch_size))
            timer.stop()
            pbar.close()
        results[name] = correct / total
    return results


def barebones_train_core(model, batch):
    loss = F.nll_loss(model(batch.x, batch.adjs), batch.y)
    loss.backward()
    return loss


def example_train(model, train_core, devit, optimizer, cb=None):
    model.train()
    for (inp,) in devit:
        optimizer.zero_grad()
        result = train_core(model, inp)
        optimizer.step()
        if cb is not None:
            cb([inp], [result])


def main(argv=None):
    global devices
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root", default="data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-nodes", type=int, default=None,
                        help="nodes of a smaller synthetic graph with 8 classes "
                             "(default: the arxiv-sized one)")
    args = parser.parse_args(argv)

    if args.dataset == "synthetic":
        dataset = (FastDataset.synthetic(num_nodes=args.num_nodes, num_features=128)  # noqa: F405
                   if args.num_nodes else FastDataset.arxiv_like())  # noqa: F405
    else:
        dataset = FastDataset.from_path(args.root, args.dataset)  # noqa: F405
    devices = ["cuda:0" if torch.cuda.is_available() else "cpu"]

    cfg = FastSamplerConfig(  # noqa: F405
        x=dataset.x, y=dataset.y.unsqueeze(-1), rowptr=dataset.rowptr, col=dataset.col,
        idx=dataset.split_idx["train"], batch_size=1024, sizes=[15, 10, 5],
        skip_nonfull_batch=False, pin_memory=True)
    train_loader = FastSampler(24, 48, cfg)  # noqa: F405
    train_shuffler = Shuffler(dataset.split_idx["train"])  # noqa: F405
    model = SAGE(dataset.num_features, 256, dataset.num_classes, 3).to(devices[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    results = {}
    for epoch in range(args.epochs):
        pbar = tqdm(total=train_loader.idx.numel(), desc=f"Epoch {epoch}")
        train_shuffler.set_epoch(epoch)
        train_loader.idx = train_shuffler.get_idx()
        with Timer(("train", epoch)):  # noqa: F405
            example_train(model, barebones_train_core,
                          DevicePrefetcher(devices, iter(train_loader)), optimizer,  # noqa: F405
                          lambda inputs, _, bar=pbar: bar.update(sum(b.batch_size for b in inputs)))
        pbar.close()
        results = batchwise_test(model, dataset, [20, 20, 20], 1024, sets=["valid"])
        print(f"epoch {epoch}: valid accuracy {results['valid']:.4f}")
    return results


if __name__ == "__main__":
    main()
