"""LoRA on scanned layers against peft + torch.optim.AdamW; PEFT folders out and in."""

from __future__ import annotations

import jax
import numpy as np
import peft
import pytest
import safetensors.numpy
import torch

import hf_models
from composed_lifts import models
from composed_lifts.errors import InputFileError
from composed_lifts.train import (
    LoraOptions,
    TrainOptions,
    from_peft,
    lora_scope,
    make_trainer,
    to_hf_merged,
    to_peft,
    with_lora,
)
from train_reference import right_padded_batches, torch_finetune

# peft 0.21.2 calls an API transformers 5.24 deprecates (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")

STEPS, LR, WARMUP = 10, 1e-2, 2
TARGETS = {"gpt2": ("c_attn", "mlp.c_proj"), "llama-gqa": ("q_proj", "v_proj", "down_proj")}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def trained(request, tmp_path_factory):
    """Both sides trained 10 steps from the same adapters; ours exported to a PEFT folder."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    hf_models.make_model(name, base)
    torch.manual_seed(0)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=list(TARGETS[name]),
        task_type="CAUSAL_LM",
        fan_in_fan_out=name == "gpt2",  # GPT-2's Conv1D (peft warns, then sets it, otherwise)
    )
    reference = peft.get_peft_model(hf_models.load_reference(base), config)
    start = tmp_path_factory.mktemp("start")
    reference.save_pretrained(start)  # peft's own init, read into our stacks
    model, params = models.from_hf(base)
    lora, options = from_peft(start, params, model.config)
    batches = right_padded_batches(5, STEPS, 4, 16, hf_models.VOCAB)
    trainer = make_trainer(
        model,
        TrainOptions(steps=STEPS, learning_rate=LR, warmup_steps=WARMUP, accumulate=2),
        lora=options,
    )
    state = trainer.init(params, lora_params=lora)
    losses = []
    for ids, mask in batches:
        state, metrics = trainer.step(state, {"ids": ids, "mask": mask})
        losses.append(float(metrics["loss"]))
    theirs = torch_finetune(
        reference,
        batches,
        steps=STEPS,
        lr=LR,
        warmup=WARMUP,
        accumulate=2,
        params=reference.parameters(),
    )
    out = tmp_path_factory.mktemp("adapter")
    to_peft(state.params, options, params, model.config, out)
    return dict(
        name=name,
        base=base,
        model=model,
        params=params,
        lora=state.params,
        options=options,
        losses=np.array(losses),
        theirs=np.array(theirs),
        reference=reference,
        out=out,
    )


def test_ten_lora_steps_equal_peft_with_torch_adamw(trained):
    np.testing.assert_allclose(trained["losses"], trained["theirs"], rtol=1e-5)
    b_leaves = [
        x for p, x in jax.tree_util.tree_leaves_with_path(trained["lora"]) if "lora_b" in str(p)
    ]
    assert b_leaves and all(np.abs(np.asarray(b)).max() > 1e-3 for b in b_leaves)  # B left 0
    ours = safetensors.numpy.load_file(str(trained["out"] / "adapter_model.safetensors"))
    theirs = {
        k.replace(".default", ""): v.detach().numpy()
        for k, v in trained["reference"].state_dict().items()
        if "lora_" in k
    }
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-5, rtol=0, err_msg=key)


def our_logits(trained, ids):
    params = with_lora(trained["params"], trained["lora"])
    with lora_scope(trained["options"]):
        return np.asarray(trained["model"].apply({"params": params}, ids))


def test_exported_adapter_loaded_by_peft_gives_our_logits(trained):
    ids = hf_models.random_ids(9, (2, 12))
    loaded = peft.PeftModel.from_pretrained(
        hf_models.load_reference(trained["base"]), trained["out"]
    )
    want = hf_models.reference_logits(loaded.eval(), ids)
    np.testing.assert_allclose(our_logits(trained, ids), want, atol=1e-5, rtol=1e-5)


def test_merged_folder_loaded_by_transformers_gives_our_logits(trained, tmp_path):
    ids = hf_models.random_ids(10, (2, 12))
    to_hf_merged(
        trained["params"], trained["lora"], trained["options"], trained["model"].config, tmp_path
    )
    want = hf_models.reference_logits(hf_models.load_reference(tmp_path), ids)
    np.testing.assert_allclose(our_logits(trained, ids), want, atol=1e-5, rtol=1e-5)


def test_peft_folder_round_trips_exactly_scanned_and_unrolled(trained, tmp_path):
    lora, options = from_peft(trained["out"], trained["params"], trained["model"].config)
    assert options == trained["options"]
    assert jax.tree_util.tree_structure(lora) == jax.tree_util.tree_structure(trained["lora"])
    for a, b in zip(jax.tree_util.tree_leaves(lora), jax.tree_util.tree_leaves(trained["lora"])):
        assert np.array_equal(a, np.asarray(b))
    _, unrolled = models.from_hf(trained["base"], scan_layers=False)
    per_layer, _ = from_peft(trained["out"], unrolled, trained["model"].config)
    to_peft(per_layer, options, unrolled, trained["model"].config, tmp_path)
    a = safetensors.numpy.load_file(str(tmp_path / "adapter_model.safetensors"))
    b = safetensors.numpy.load_file(str(trained["out"] / "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_target_the_model_lacks_is_refused(trained):
    from composed_lifts.train import init_lora

    with pytest.raises(ValueError, match="LoRA targets must be names of the layers' projections"):
        init_lora(trained["params"], LoraOptions(rank=2, targets=("nope",)), jax.random.PRNGKey(0))


def test_a_peft_folder_for_another_model_is_refused(trained, tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    with pytest.raises(InputFileError, match="peft_type 'PROMPT_TUNING'"):
        from_peft(tmp_path, trained["params"], trained["model"].config)
