"""Issue 14, sections 2 and 5: bad data never trains; security.

DATA_CASES is one table of bad data files: each goes through the entry point the
``preference_data`` or ``benchmark_prompts`` rule runs (``prepare(params, out)``, the real loaders)
and must fail with an error naming the file and its 1-based row or line, writing nothing. The
other tests cover what a table of failures cannot: the good twins (a BOM is fine in every format,
CSV booleans are parsed), the parse-time check of local paths, one real Snakemake run of a data
rule on a bad file, safe model loading, and one small real workflow run with a fake hub token and a
hostile system prompt (the token appears in no output; the prompt reaches the job verbatim).
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from safealign import checks, cli
from safealign.data import benchmark, preference

REPO = Path(__file__).resolve().parents[1]
COPY = ("workflow", "rules", "envs", "config", "src")
FAKE_TOKEN = "hf_FAKEtokenFORtests0123456789abcdefXYZ"

PREF_COLUMNS = "id,prompt,response_0,response_1,safer_response_id,is_response_0_safe,is_response_1_safe"


def _jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _pair(i: int = 1, **over) -> dict:
    row = {"id": f"p{i}", "prompt": f"How do I do thing {i}?", "response_0": "I can't help with that.",
           "response_1": f"Sure, here is how to do thing {i}.", "safer_response_id": 0,
           "is_response_0_safe": True, "is_response_1_safe": False}
    row.update(over)
    return row


def _csv(*lines: str, header: str = PREF_COLUMNS) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


@dataclass(frozen=True)
class Case:
    id: str
    rule: str  # "preference" or a benchmark loader: alert, alert_adversarial, xstest, rtp
    file: str  # the data file's name (its suffix picks the reader)
    content: bytes
    error: str  # expected text after "<file>: " (the message names file and row/line)


DATA_CASES = [
    # -- preference rows: types per the PKU-SafeRLHF schema
    Case("pref-null-prompt", "preference", "pairs.jsonl",
         _jsonl(_pair(1), _pair(2, prompt=None)), "row 2 field 'prompt' is null"),
    Case("pref-empty-prompt-csv", "preference", "pairs.csv",
         _csv("a,,no,yes,0,true,false"), "row 1 has an empty 'prompt' field"),
    Case("pref-response-not-text", "preference", "pairs.jsonl",
         _jsonl(_pair(1, response_1=42)), "row 1 field 'response_1' is an int, not text"),
    Case("pref-response-null", "preference", "pairs.jsonl",
         _jsonl(_pair(1), _pair(2), _pair(3, response_0=None)), "row 3 field 'response_0' is null"),
    Case("pref-response-list", "preference", "pairs.json",
         json.dumps([_pair(1), _pair(2, response_0=["a", "b"])]).encode(),
         "row 2 field 'response_0' is a list, not text"),
    Case("pref-missing-field", "preference", "pairs.jsonl",
         _jsonl({k: v for k, v in _pair(1).items() if k != "response_1"}),
         "row 1 has no 'response_1' field (PKU-SafeRLHF schema"),
    Case("pref-safer-first", "preference", "pairs.jsonl",
         _jsonl(_pair(1), _pair(2, safer_response_id="first")),
         "row 2 field 'safer_response_id' must be 0 or 1 (the index of the safer response), got 'first'"),
    Case("pref-safer-2", "preference", "pairs.jsonl",
         _jsonl(_pair(1, safer_response_id=2)), "row 1 field 'safer_response_id' must be 0 or 1"),
    Case("pref-safer-2-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,true,false", "b,q,no,yes,2,true,false"),
         "row 2 field 'safer_response_id' must be 0 or 1 (the index of the safer response), got '2'"),
    Case("pref-safer-bool", "preference", "pairs.jsonl",
         _jsonl(_pair(1, safer_response_id=True)), "row 1 field 'safer_response_id' must be 0 or 1"),
    Case("pref-flag-not-bool-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,maybe,false"), "row 1 field 'is_response_0_safe' is not a boolean: 'maybe'"),
    Case("pref-flag-empty-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,1,true,"), "row 1 field 'is_response_1_safe' is not a boolean: ''"),
    # "False" in a CSV is false: every row's safer response is unsafe, so nothing is left to train on.
    Case("pref-csv-false-is-false", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,False,False", "b,q2,no,yes,1,False,False"),
         "no usable pairs in 2 row(s)"),
    Case("pref-duplicate-id", "preference", "pairs.jsonl",
         _jsonl(_pair(1), _pair(2), _pair(1)), "row 3 repeats the id 'p1' of row 1"),
    Case("pref-not-json", "preference", "pairs.jsonl",
         _jsonl(_pair(1)) + b"{not json\n", "line 2 is not valid JSON"),
    Case("pref-row-not-object", "preference", "pairs.jsonl",
         _jsonl(_pair(1)) + b"[1, 2]\n", "line 2 is a list, not an object"),
    Case("pref-extra-cells-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,true,false,surplus"), "row 1 has more cells than the header"),
    # -- encodings: UTF-8 (BOM or not) in every format; anything else names file and line
    Case("pref-latin1-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,true,false") + "b,caf\u00e9?,no,yes,0,true,false\n".encode("latin-1"),
         "line 3 is not UTF-8 text (byte 0xe9); re-save the file as UTF-8"),
    Case("pref-latin1-jsonl", "preference", "pairs.jsonl",
         _jsonl(_pair(1)) + json.dumps(_pair(2, prompt="caf\u00e9"), ensure_ascii=False).encode("latin-1"),
         "line 2 is not UTF-8 text (byte 0xe9)"),
    Case("bench-latin1-xstest-csv", "xstest", "xstest.csv",
         "id,prompt,type,label,focus,note\n1,Na\u00efve question,homonyms,safe,,\n".encode("latin-1"),
         "line 2 is not UTF-8 text (byte 0xef)"),
    # -- empty files name the file
    Case("pref-empty-file", "preference", "pairs.jsonl", b"", "the file has no data rows"),
    Case("pref-header-only-csv", "preference", "pairs.csv", _csv(), "the file has no data rows"),
    Case("bench-empty-alert", "alert", "alert.jsonl", b"\n\n", "the file has no data rows"),
    Case("bench-empty-xstest-bom-only", "xstest", "xstest.csv", b"\xef\xbb\xbf", "empty CSV (no header)"),
    # -- benchmark rows
    Case("bench-alert-null-prompt", "alert", "alert.jsonl",
         _jsonl({"id": 1, "category": "crime", "prompt": "q"}, {"id": 2, "category": "crime", "prompt": None}),
         "row 2 field 'prompt' is null"),
    Case("bench-alert-wrapper-only", "alert", "alert.jsonl",
         _jsonl({"id": 1, "category": "crime", "prompt": "### Instruction:\n\n### Response:\n"}),
         "row 1 has an empty prompt once the wrapper is stripped"),
    Case("bench-alert-duplicate-id", "alert", "alert.jsonl",
         _jsonl({"id": 1, "category": "c", "prompt": "a"}, {"id": 1, "category": "c", "prompt": "b"}),
         "row 2 has the duplicate id '1' (first in row 1)"),
    Case("bench-adversarial-no-attack", "alert_adversarial", "adv.jsonl",
         _jsonl({"id": 1, "category": "c", "prompt": "a"}), "row 1 has no 'attack_type' field"),
    Case("bench-xstest-bad-label", "xstest", "xstest.csv",
         b"id,prompt,type,label,focus,note\n1,q,homonyms,maybe,,\n",
         "row 1 label must be 'safe' or 'unsafe', got 'maybe'"),
    Case("bench-rtp-flag-not-bool", "rtp", "rtp.jsonl",
         _jsonl({"id": "r1", "challenging": "perhaps", "prompt": {"text": "a", "toxicity": 0.1}}),
         "row 1 field 'challenging' is not a boolean: 'perhaps'"),
    # challenging "false" in a CSV is false: the challenging subset is empty, named with its file
    Case("bench-rtp-none-challenging-csv", "rtp", "rtp.csv",
         b'id,challenging,prompt.text,prompt.toxicity\nr1,false,a,0.1\nr2,False,b,0.9\n',
         "yielded none with loader 'rtp', options {'seed': 0, 'challenging_only': True} "
         "(only rows with 'challenging' true are kept"),
    Case("bench-unsupported-suffix", "alert", "alert.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
    # -- issue 27: a repeated header column, another delimiter, a broken .gz
    Case("pref-duplicate-header-csv", "preference", "pairs.csv",
         _csv("a,q,no,yes,0,true,false,q again", header=PREF_COLUMNS + ",prompt"),
         "the header has the column 'prompt' 2 times (a CSV reader keeps only the last one); rename or remove "
         "the others"),
    Case("bench-semicolon-xstest-csv", "xstest", "xstest.csv",
         b"id;prompt;type;label;focus;note\n1;q;homonyms;safe;;\n",
         "the header is one column 'id;prompt;type;label;focus;note': the file is semicolon-separated, and CSV "
         "files are read comma-separated; re-save it with commas"),
    Case("pref-truncated-gz", "preference", "pairs.jsonl.gz", gzip.compress(_jsonl(_pair(1), _pair(2)))[:30],
         "the .gz file is cut short (truncated); download or compress it again, or give the uncompressed file"),
    Case("bench-not-gzip", "alert", "alert.jsonl.gz", _jsonl({"id": 1, "category": "c", "prompt": "q"}),
         "the .gz file is not valid gzip (Not a gzipped file"),
]


def _params(case: Case, path: Path) -> dict:
    """What rules/common.smk's p_preference / p_benchmark give the rule for a `path:` source."""
    if case.rule == "preference":
        return {"source": {"path": str(path)}, "schema": "pku_saferlhf", "max_pairs": None}
    return {"loader": case.rule, "source": {"path": str(path)}, "name": f"my_{case.rule}"}


def _prepare(case: Case, params: dict, out: Path) -> int:
    return (preference if case.rule == "preference" else benchmark).prepare(params, str(out))


def test_table_is_large_and_ids_unique():
    assert len(DATA_CASES) >= 15
    assert len({c.id for c in DATA_CASES}) == len(DATA_CASES)


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.id)
def test_bad_data_fails_naming_file_and_row_and_writes_nothing(case, tmp_path):
    data = tmp_path / "data" / case.file
    data.parent.mkdir()
    data.write_bytes(case.content)
    out_dir = tmp_path / "results" / "data"
    out = out_dir / ("preference.jsonl" if case.rule == "preference" else "prompts.jsonl")
    with pytest.raises(ValueError) as err:
        _prepare(case, _params(case, data), out)
    message = str(err.value)
    assert str(data) in message, message  # the file is named ...
    assert case.error in message, message  # ... with the row/line and what is wrong
    # Nothing was written under results/: no output, no temporary sibling, not even the folder.
    assert not (tmp_path / "results").exists(), list((tmp_path / "results").rglob("*"))


# ---------------------------------------------------------------------------- the good twins
def _prepare_bytes(tmp_path: Path, rule: str, name: str, content: bytes) -> list[dict]:
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / f"{name}.out.jsonl"
    case = Case("ok", rule, name, content, "")
    _prepare(case, _params(case, path), out)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_bom_is_accepted_alike_in_jsonl_json_and_csv(tmp_path):
    rows = [_pair(1), _pair(2, safer_response_id=1, response_0="Here you go.", response_1="No.",
                            is_response_0_safe=False, is_response_1_safe=True)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([[r[k] for k in PREF_COLUMNS.split(",")] for r in rows])
    csv_lines = buf.getvalue().splitlines()
    bom = b"\xef\xbb\xbf"
    plain = _prepare_bytes(tmp_path, "preference", "plain.jsonl", _jsonl(*rows))
    assert [p["chosen"][0]["content"] for p in plain] == ["I can't help with that.", "No."]
    for name, content in [("bom.jsonl", bom + _jsonl(*rows)), ("bom.json", bom + json.dumps(rows).encode()),
                          ("bom.csv", bom + _csv(*csv_lines)), ("plain.csv", _csv(*csv_lines))]:
        assert _prepare_bytes(tmp_path, "preference", name, content) == plain, name
    alert = [{"id": 1, "category": "crime", "prompt": "### Instruction:\nq\n### Response:\n"}]
    assert _prepare_bytes(tmp_path, "alert", "a.jsonl", bom + _jsonl(*alert))[0]["prompt"] == "q"


def test_csv_booleans_are_parsed_so_the_both_unsafe_filter_fires(tmp_path):
    pairs = _prepare_bytes(tmp_path, "preference", "mixed.csv", _csv(
        "keep0,q0,refuse,comply,0,True,False",
        "drop1,q1,comply,comply,0,False,False",  # both unsafe: the string "False" is false
        "keep2,q2,comply,refuse,1,false,TRUE",
        "drop3,q3,same,same,0,1,0",  # identical responses
        "keep4,q4,refuse,comply,0,1,0",
    ))
    assert [p["id"] for p in pairs] == ["keep0", "keep2", "keep4"]
    assert [p["chosen"][0]["content"] for p in pairs] == ["refuse", "refuse", "refuse"]
    assert [p["rejected"][0]["content"] for p in pairs] == ["comply", "comply", "comply"]


def test_rtp_csv_challenging_false_is_false(tmp_path):
    rows = _prepare_bytes(tmp_path, "rtp", "rtp.csv", b"id,challenging,prompt.text,prompt.toxicity\n"
                          b"r1,False,a,0.1\nr2,True,b,0.9\nr3,false,c,0.2\n")
    assert [r["id"] for r in rows] == ["r2"]


# ---------------------------------------------------------------------------- parse-time paths
def _config_with(default_config: dict, **sources: str) -> dict:
    config = copy.deepcopy(default_config)
    for key, path in sources.items():
        if key == "preference":
            config["preference_data"]["source"] = {"path": path}
        else:
            config["benchmarks"][key]["source"] = {"path": path}
    return config


def test_missing_local_path_is_a_parse_time_error_naming_key_and_path(default_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alert.jsonl").write_text('{"id": 1, "category": "c", "prompt": "q"}\n')
    (tmp_path / "a_dir.jsonl").mkdir()
    checks.check_local_paths(_config_with(default_config, alert="alert.jsonl"))  # exists: fine
    config = _config_with(default_config, alert="data/nope.jsonl", xstest="a_dir.jsonl",
                          preference="missing/pairs.csv")
    config["models"]["tiny"] = {"path": "no/such/model"}
    with pytest.raises(checks.ConfigError) as err:
        checks.check_local_paths(config)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{len(lines) - 1} config problems:"
    assert lines[1:] == [
        f"config.preference_data.source.path = 'missing/pairs.csv': does not exist (relative paths "
        f"are relative to the working directory {tmp_path})",
        f"config.benchmarks.alert.source.path = 'data/nope.jsonl': does not exist (relative paths "
        f"are relative to the working directory {tmp_path})",
        f"config.benchmarks.xstest.source.path = 'a_dir.jsonl': is not a file (relative paths "
        f"are relative to the working directory {tmp_path})",
        f"config.models.tiny.path = 'no/such/model': does not exist (relative paths "
        f"are relative to the working directory {tmp_path})",
    ]


def _copy_project(dest: Path) -> Path:
    for name in COPY:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _snakemake(cwd: Path, *args: str, env: dict | None = None, timeout: int = 900):
    """Snakemake in ``cwd``; targets go before ``--configfile`` (which takes every later word)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                               "OMP_NUM_THREADS": "1", **(env or {})})


def _write_config(work: Path, config: dict) -> str:
    (work / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return "cfg.yaml"


@pytest.mark.workflow
def test_snakemake_dry_run_refuses_missing_path_and_writes_nothing(default_config, tmp_path):
    work = _copy_project(tmp_path)
    cfg = _write_config(work, _config_with(default_config, alert="data/nope.jsonl"))
    run = _snakemake(work, "-n", "--configfile", cfg)
    assert run.returncode != 0
    assert "config.benchmarks.alert.source.path = 'data/nope.jsonl': does not exist" in run.stderr + run.stdout
    assert not (work / "results").exists()


@pytest.mark.workflow
def test_snakemake_data_rule_on_a_bad_file_fails_and_writes_nothing(default_config, tmp_path):
    """One real run of the preference_data rule: the job fails, its log names file and row, and
    neither the output nor a temporary sibling is left behind."""
    work = _copy_project(tmp_path)
    (work / "data").mkdir()
    (work / "data" / "pairs.csv").write_bytes(_csv("a,q,no,yes,0,true,false", "b,q,no,yes,first,true,false"))
    cfg = _write_config(work, _config_with(default_config, preference="data/pairs.csv"))
    run = _snakemake(work, "results/data/preference.jsonl", "--cores", "1", "--configfile", cfg)
    assert run.returncode != 0, run.stdout[-3000:]
    log = (work / "results" / "logs" / "preference_data.log").read_text()
    reason = ("preference_data source data/pairs.csv: row 2 field 'safer_response_id' must be 0 or 1 "
              "(the index of the safer response), got 'first'")
    assert reason in log
    # The job's stderr, which Snakemake shows on the console, has the same one-line reason.
    assert (f"safealign: the job failed: ValueError: {reason}\n(the whole traceback: "
            "results/logs/preference_data.log)") in run.stderr, run.stderr[-3000:]
    data_dir = work / "results" / "data"
    assert not data_dir.exists() or not any(data_dir.iterdir())


# ---------------------------------------------------------------------------- security
def test_models_load_without_remote_code_and_from_safetensors_only(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from safealign import models
    from safealign.capability.harness import model_args
    from safealign.generate.vllm_backend import _llm_kwargs

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, num_attention_heads=1, num_key_value_heads=1,
                      intermediate_size=32, num_hidden_layers=1, max_position_embeddings=32)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    good, pickled = tmp_path / "good", tmp_path / "pickled"
    model.save_pretrained(good)  # safetensors
    _save_pickled(model, pickled)
    assert not list(pickled.glob("*.safetensors")) and list(pickled.glob("*.bin"))

    loaded = models.load_model({"path": str(good)})
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    for load in (lambda: models.load_model({"path": str(pickled)}),
                 lambda: model_args({"path": str(pickled)}, None, "float32"),
                 lambda: _llm_kwargs({"path": str(pickled)}, None, {})):
        with pytest.raises(ValueError, match=rf"model directory {pickled} has no \*\.safetensors weights "
                                             r"\(it has \['pytorch_model\.bin'\]\); safealign loads safetensors only"):
            load()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="LoRA adapter directory .* has no adapter_model.safetensors"):
        models.load_model({"path": str(good)}, adapter=adapter)
    with pytest.raises(ValueError, match="LoRA adapter directory .* has no adapter_model.safetensors"):
        model_args({"path": str(good)}, str(adapter), "float32")

    # A repository that asks for its own code (auto_map) is refused, not executed.
    remote = tmp_path / "remote"
    model.save_pretrained(remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "evil.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').write('x')\n")
    try:
        models.load_model({"path": str(remote)})
    except Exception:  # noqa: BLE001 - transformers may refuse; what matters is that nothing ran
        pass
    assert not (tmp_path / "RAN").exists()

    hub = {"hub": "org/model", "revision": "a" * 40}
    assert _from_pretrained_kwargs(hub) == {
        "model": {"revision": "a" * 40, "trust_remote_code": False, "use_safetensors": True},
        "tokenizer": {"revision": "a" * 40, "trust_remote_code": False},
    }
    assert model_args(hub, None, "float32")["trust_remote_code"] is False
    assert model_args(hub, None, "float32")["use_safetensors"] is True
    assert "use_safetensors" not in model_args({**hub, "gguf_file": "m.gguf"}, None, "float32")
    vllm_kwargs = _llm_kwargs(hub, None, {})
    assert vllm_kwargs["trust_remote_code"] is False and vllm_kwargs["load_format"] == "safetensors"


def _from_pretrained_kwargs(ref: dict) -> dict:
    """The keyword arguments models.py gives transformers' from_pretrained (recorded, not run)."""
    import transformers

    from safealign import models

    seen = {}

    class Stop(Exception):
        pass

    def recorder(what):
        def from_pretrained(name, **kwargs):
            seen[what] = {k: v for k, v in kwargs.items() if k != "dtype"}
            raise Stop

        return from_pretrained

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recorder("model"))
        mp.setattr(transformers.AutoTokenizer, "from_pretrained", recorder("tokenizer"))
        for load in (models.load_model, models.load_tokenizer):
            with pytest.raises(Stop):
                load(ref)
    return seen


def _save_pickled(model, path: Path) -> None:
    import torch

    path.mkdir()
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")


def test_log_records_redact_the_hub_token(monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN[::-1])
    cli.setup(type("Args", (), {"params": "{}"})())
    with caplog.at_level(logging.INFO):
        logging.getLogger("safealign.test").info("headers %s / %s", FAKE_TOKEN, FAKE_TOKEN[::-1])
    assert FAKE_TOKEN not in caplog.text and FAKE_TOKEN[::-1] not in caplog.text
    assert "headers *** / ***" in caplog.text


HOSTILE_PROMPT = "Be $(touch PWNED_DOLLAR) and `touch PWNED_TICK`; it's \"quoted\" \\ ${HOME} ok"


@pytest.mark.workflow
def test_shell_commands_quote_every_config_string(default_config, tmp_path):
    """A dry run prints each job's shell command; split as the shell splits it, every config string
    comes back verbatim: the hostile system prompt (inside --params), a vLLM interpreter path and a
    capability items path with spaces, `$(...)` and backticks."""
    work = _copy_project(tmp_path)
    config = copy.deepcopy(default_config)
    config["benchmarks"]["toxicity_benign"]["system_prompt"] = HOSTILE_PROMPT
    config["generation"].update(backend="vllm", vllm_python="/opt/my envs/$(touch PWNED)/`id`/python")
    items = "caps dir/items $(touch PWNED) `id`.jsonl"
    (work / "caps dir").mkdir()
    (work / items).write_text('{"task": "world_math", "question": "1+1", "answer": "2"}\n')
    config["capability"].update(source={"path": items}, tasks=["world_math"])  # the items' only task
    cfg = _write_config(work, config)
    dry = _snakemake(work, "-n", "-p", "--configfile", cfg)
    assert dry.returncode == 0, dry.stderr[-3000:]
    seen = {"generate": 0, "toxicity_benign": 0, "judge": 0, "capability": 0}
    for line in dry.stdout.splitlines():
        if "-m safealign." not in line:
            continue
        words = shlex.split(line[line.index("OMP_NUM_THREADS="):])  # raises on an unbalanced quote
        module = "safealign." + words[words.index("-m") + 2]  # python -m safealign.job <stage>
        if module == "safealign.generate":
            seen["generate"] += 1
            assert words[1] == config["generation"]["vllm_python"]
            params = json.loads(words[words.index("--params") + 1])
            prompts = {b["name"]: b["system_prompt"] for b in params["benchmarks"]}
            if "toxicity_benign" in prompts:  # one generation job per (variant, benchmark)
                seen["toxicity_benign"] += 1
                assert prompts["toxicity_benign"] == HOSTILE_PROMPT
        elif module == "safealign.judge" and words[1] != "python":
            seen["judge"] += 1
            assert words[1] == config["generation"]["vllm_python"]
        elif module == "safealign.capability.harness":
            seen["capability"] += 1
            assert words[words.index("--items") + 1] == items
    assert all(seen.values()), seen
    assert not list(work.rglob("PWNED*"))


def _small_world(default_config: dict) -> dict:
    """The default config cut to what the security run needs: a 1-layer base model trained one
    epoch, 32 pairs, one method trained one epoch, few prompts and tokens, the hostile system
    prompt."""
    config = copy.deepcopy(default_config)
    world = config["models"]["tiny"]["world"]
    world["architecture"].update(hidden_size=32, num_attention_heads=1, intermediate_size=64,
                                 num_hidden_layers=1)
    world["train"]["epochs"] = 1
    config["world"]["n_preference_pairs"] = 32
    config["methods"] = {"safe_dpo": {**config["methods"]["safe_dpo"], "num_train_epochs": 1}}
    config["benchmarks"]["alert"]["n_per_category"] = 1
    config["benchmarks"]["alert_adversarial"]["n_per_category"] = 1
    for name in ("toxicity_benign", "toxicity_adversarial"):
        config["benchmarks"][name]["generation"]["num_samples"] = 1
    config["benchmarks"]["toxicity_benign"]["system_prompt"] = HOSTILE_PROMPT
    config["generation"]["max_new_tokens"] = 4
    return config


@pytest.mark.workflow
def test_fake_token_never_reaches_an_output_and_config_strings_are_quoted(default_config, tmp_path):
    """A small real run (world data, base model, prompts, base generation) with a fake hub token in
    the environment: the token is in
    no file under the run directory (results, logs, provenance, Snakemake's log) nor in Snakemake's
    output. The hostile system prompt reaches the generation job verbatim and runs nothing."""
    work = _copy_project(tmp_path)
    cfg = _write_config(work, _small_world(default_config))
    # Base generation only: training, judging and the report are covered with a fake token by the
    # shared tiny-grid run (tests/test_workflow.py::test_fake_hub_token_reaches_no_output).
    targets = ["results/generations/tiny/base/toxicity_benign.meta.json"]  # one generation cell
    env = {"HF_TOKEN": FAKE_TOKEN, "HUGGING_FACE_HUB_TOKEN": FAKE_TOKEN}
    dry = _snakemake(work, *targets, "-n", "-p", "--configfile", cfg, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # The shell command as Snakemake prints it: shell words give back the exact config string.
    commands = [line for line in dry.stdout.splitlines() if "-m safealign.job generate " in line]
    assert commands, dry.stdout[-3000:]
    for line in commands:
        words = shlex.split(line[line.index("OMP_NUM_THREADS="):])
        params = json.loads(words[words.index("--params") + 1])
        prompts = {b["name"]: b["system_prompt"] for b in params["benchmarks"]}
        assert prompts["toxicity_benign"] == HOSTILE_PROMPT

    run = _snakemake(work, *targets, "--cores", "2", "--configfile", cfg, env=env)
    assert run.returncode == 0, run.stderr[-5000:]
    meta = json.loads((work / targets[0]).read_text())
    assert meta["benchmarks"]["toxicity_benign"]["system_prompt"] == HOSTILE_PROMPT
    assert not list(work.rglob("PWNED*"))

    token = FAKE_TOKEN.encode()
    assert token not in (run.stdout + run.stderr).encode()
    scanned = 0
    for path in work.rglob("*"):  # everything the run wrote: results/, .snakemake/, ...
        if path.is_file() and path.relative_to(work).parts[0] not in COPY:
            scanned += 1
            assert token not in path.read_bytes(), f"the hub token leaked into {path}"
    assert scanned >= 10  # the run wrote its outputs, logs and provenance
