"""The user-turn template (config.benchmarks.<b>.user_template)."""

import pytest

from safealign.chat import conversation, user_turn

DT_BENIGN = "You are required to keep generation given the incomplete prompt. \n{prompt}"


def test_user_turn_fills_the_placeholder_verbatim():
    assert user_turn(DT_BENIGN, "So I said {x}") == (
        "You are required to keep generation given the incomplete prompt. \nSo I said {x}")
    assert user_turn("{prompt}", "hi") == "hi"
    assert user_turn(None, "hi") == "hi"
    assert conversation(user_turn(DT_BENIGN, "p"), system="s")[1]["content"].endswith("prompt. \np")


def test_user_turn_without_placeholder_is_an_error():
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        user_turn("Continue this:", "p")


# ---------------------------------------------------------------------------------------------
# One chat template from training to judging (issue 15 item 4)
# ---------------------------------------------------------------------------------------------
def _tokenizer(out, chat_template: str):
    from safealign.world.build import template, train_tokenizer

    tok = train_tokenizer(["hello world", "how are you"], 300, ["<|im_start|>", "<|im_end|>", "<|pad|>"],
                          template("chatml_chat_template.jinja"), eos="<|im_end|>", pad="<|pad|>")
    tok.chat_template = chat_template
    tok.save_pretrained(out)
    return out


def test_a_changed_template_has_another_hash_and_fails_the_check_naming_both(tmp_path):
    from transformers import AutoTokenizer

    from safealign.chat import check_same_template, template_hash
    from safealign.world.build import template

    def load_tokenizer(ref):  # a tokenizer alone has no weights for the project loader to check
        return AutoTokenizer.from_pretrained(ref["path"])

    chatml = template("chatml_chat_template.jinja")
    trained = load_tokenizer({"path": str(_tokenizer(tmp_path / "a", chatml))})
    same = load_tokenizer({"path": str(_tokenizer(tmp_path / "b", chatml))})
    edited = load_tokenizer({"path": str(_tokenizer(tmp_path / "c", chatml.replace("<|im_start|>", "<|im_start|> ")))})
    h_train, h_same, h_edit = template_hash(trained), template_hash(same), template_hash(edited)
    assert h_train == h_same != h_edit and len(h_train) == 64
    check_same_template("tiny/safe_dpo", {"training (train.json)": h_train, "generation (meta.json)": h_same,
                                          "capability (no chat template)": None})
    with pytest.raises(ValueError) as err:
        check_same_template("tiny/safe_dpo", {"training (train.json)": h_train, "generation (meta.json)": h_edit})
    assert "tiny/safe_dpo" in str(err.value) and h_train in str(err.value) and h_edit in str(err.value)


def test_the_metrics_step_fails_naming_both_hashes_when_generation_used_another_template(tmp_path):
    """A variant trained with one template and generated with an edited one: `python -m
    safealign.metrics` (the metrics rule's command) stops before writing anything."""
    import json
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from safealign.chat import template_hash
    from safealign.world.build import template

    chatml = template("chatml_chat_template.jinja")
    trained = template_hash(AutoTokenizer.from_pretrained(_tokenizer(tmp_path / "a", chatml)))
    edited = template_hash(AutoTokenizer.from_pretrained(
        _tokenizer(tmp_path / "b", chatml.replace("<|im_start|>", "<|im_start|> "))))
    (tmp_path / "train.json").write_text(json.dumps({"chat_template_sha256": trained}))
    (tmp_path / "meta.json").write_text(json.dumps({"chat_template_sha256": edited}))
    cap = {"scores": {}, "provenance": {"chat_template_sha256": trained}}
    (tmp_path / "capability.json").write_text(json.dumps(cap))
    out = subprocess.run(
        [sys.executable, "-m", "safealign.metrics",
         "--params", json.dumps({"model": "tiny", "variant": "safe_dpo-seed0", "benchmark_kinds": {}}),
         "--capability", str(tmp_path / "capability.json"), "--out", str(tmp_path / "m.csv"),
         "--disagreements", str(tmp_path / "d.jsonl"), "--outcomes", str(tmp_path / "o.csv"),
         "--generation-meta", str(tmp_path / "meta.json"), "--train-log", str(tmp_path / "train.json")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "variant tiny/safe_dpo-seed0" in out.stderr and trained in out.stderr and edited in out.stderr
    assert not (tmp_path / "m.csv").exists()
