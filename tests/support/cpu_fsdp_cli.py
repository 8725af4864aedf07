"""``vtg-data`` as ``accelerate launch --config_file scripts/accelerate/fsdp.yaml`` runs it on GPUs,
but in CPU processes (gloo).

accelerate turns FSDP on only for GPU process groups; torch's FSDP2 itself shards over gloo on
CPU. This entry point lifts that one gate (the plugin is built from the same ``FSDP_*`` variables
the launcher set from the config file) and changes nothing else, so the tests exercise the real
sharding, gathering and lockstep generation of a multi-GPU run.
"""

import os

import accelerate
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin


class CPUFSDPAccelerator(accelerate.Accelerator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin()
            # both shared states: AcceleratorState copies PartialState's fields whenever it is re-created
            self.state.distributed_type = DistributedType.FSDP
            accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


accelerate.Accelerator = CPUFSDPAccelerator

if __name__ == "__main__":
    from vtg_data.cli import app

    app()
