"""One process of a fine-tuning run over ``jax.distributed`` (CPU, gloo collectives).

    python train_multiprocess_script.py PROCESS_ID NUM_PROCESSES PORT DEVICES_PER_PROCESS FOLDER OUT LOAD STOP

Trains 3 data-parallel steps on a mesh over every process's devices (each process feeds
its own rows of each batch), saves the train state to OUT/state.safetensors (after step STOP
if it is not 0, then stops), first restoring it from LOAD unless LOAD is '-'; process 0 prints
the losses of its steps as one JSON line.
"""

import json
import sys

import jax

pid, count, port, local, folder, out, load, stop = sys.argv[1:9]
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", int(local))
if int(count) > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=int(count), process_id=int(pid))

import numpy as np  # noqa: E402

from composed_lifts import device_mesh, models  # noqa: E402
from composed_lifts.train import (  # noqa: E402
    TrainOptions,
    load_train_state,
    make_trainer,
    token_windows,
    train_loop,
)

model, params = models.from_hf(folder)
mesh = device_mesh({"data": jax.device_count()})
trainer = make_trainer(model, TrainOptions(steps=3, learning_rate=1e-3, warmup_steps=1), mesh=mesh)
state = trainer.init(params)
position = 0
if load != "-":
    state, position = load_train_state(load, state)
start = int(state.step)
docs = list(np.random.default_rng(0).integers(0, model.config.vocab_size, (16, 20)))
data = token_windows(docs, 12, model.config.vocab_size)
losses = []
result = train_loop(
    trainer,
    state,
    data,
    rows=4,
    position=position,
    checkpoint=f"{out}/state.safetensors",
    on_step=lambda step, m: losses.append(m["loss"]),
    stop_requested=lambda: int(stop) > 0 and start + len(losses) >= int(stop),
)
if jax.process_index() == 0:
    print(
        json.dumps(
            {"losses": losses, "devices": jax.device_count(), "processes": jax.process_count()}
        )
    )
