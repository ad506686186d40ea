"""Training over ``torch.distributed``: joining and leaving the process group."""

from salient_pipes.distributed.process_group import init_distributed, process_group

__all__ = ["init_distributed", "process_group"]
