"""The README's "Hugging Face models" example runs, and its claims hold against transformers."""

import os
import pathlib
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_hugging_face_example(capsys):
    section = README.read_text().split("## Hugging Face models", 1)[1].split("\n## ", 1)[0]
    block, text_block = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    torch.manual_seed(0)  # the example's random model: the same weights every run
    exec(compile(block, str(README), "exec"), namespace)
    assert capsys.readouterr().out == "(2, 64, 64)\n"
    folder, ids = namespace["folder"], namespace["ids"]
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    exported = transformers.AutoModelForCausalLM.from_pretrained(folder + "/export")
    with torch.no_grad():
        want = reference(torch.as_tensor(ids)).logits.numpy()
        reexported = exported(torch.as_tensor(ids)).logits.numpy()
        reference.generation_config.eos_token_id = None
        tokens = reference.generate(
            torch.as_tensor(ids),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            do_sample=False,
            max_new_tokens=8,
            pad_token_id=0,
        ).numpy()[:, ids.shape[1] :]
    logits = np.asarray(namespace["logits"])
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_array_equal(reexported, want)
    np.testing.assert_array_equal(namespace["tokens"], tokens)
    exec(compile(text_block, str(README), "exec"), namespace)  # text in and out
    result = namespace["result"]
    assert len(result.text) == 2 and set(result.stop_reasons) <= {"eos", "stop_string", "length"}
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=folder + "/tokenizer.json")
    assert result.text == [hf_tokenizer.decode(row) for row in result.new_ids]
