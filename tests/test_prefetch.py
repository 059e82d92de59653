"""The prefetch step and the hub lock, against a local fake hub (no network): the public names
huggingface_hub.HfApi.model_info / dataset_info, huggingface_hub.snapshot_download and
datasets.load_dataset are replaced by fakes that answer a commit per (repo, revision) and write
files into the cache the command was given."""

import copy
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import datasets
import huggingface_hub
import pytest
import yaml

from safealign import prefetch
from safealign.checks import ConfigError, unpinned
from safealign.configload import load_config

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"


def fake_sha(repo_id, revision):
    return hashlib.sha1(f"{repo_id}@{revision or 'main'}".encode()).hexdigest()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A hub that knows every repo except those in ``gated``; records downloads."""
    calls = {"snapshot": [], "load_dataset": [], "gated": set()}

    def info(kind):
        def answer(self, repo_id, revision=None, **kw):
            if repo_id in calls["gated"]:
                raise huggingface_hub.errors.GatedRepoError(f"{repo_id} is gated", response=SimpleNamespace(
                    status_code=401, headers={}, request=None, url=""))
            return SimpleNamespace(id=repo_id, sha=fake_sha(repo_id, revision))
        return answer

    def snapshot_download(repo_id, revision=None, ignore_patterns=None, **kw):
        import os

        snap = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "config.json").write_text("{}")
        calls["snapshot"].append((repo_id, revision, tuple(ignore_patterns or ())))
        return str(snap)

    def load_dataset(path, name=None, revision=None, split=None, **kw):
        calls["load_dataset"].append((path, name, revision, split))
        # Where the datasets library keeps its prepared copy (what an offline run reads).
        (Path(os.environ["HF_HOME"]) / "datasets" / path.replace("/", "___")).mkdir(parents=True, exist_ok=True)
        return []

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", info("model"))
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", info("dataset"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "default-home"))
    return calls


def paper_config():
    return yaml.safe_load(PAPER.read_text())


def test_hub_refs_name_every_hub_reference_of_the_paper_config():
    cfg = paper_config()
    refs = prefetch.hub_refs(cfg)
    models = {r.repo_id for r in refs if r.kind == "model"}
    want_models = {s["hub"] for s in cfg["models"].values() if "hub" in s}
    want_models |= {j["model"]["hub"] for j in cfg["judges"].values() if "hub" in j.get("model", {})}
    assert models == want_models
    sources = [cfg["preference_data"]["source"]] + [b["source"] for b in cfg["benchmarks"].values()]
    assert sorted((r.repo_id, r.config_name, r.split) for r in refs if r.kind == "dataset") == sorted(
        (s["hub"], s.get("config"), s.get("split")) for s in sources if "hub" in s)


def test_prefetch_writes_the_lock_and_the_run_reads_it_offline(fake_hub, tmp_path, monkeypatch):
    lock_path = tmp_path / "hub.lock.yaml"
    cache = tmp_path / "cache"
    rc = prefetch.main(["--configfile", str(PAPER), "--cache", str(cache), "--lock", str(lock_path),
                        "--no-capability"])
    assert rc == 0
    cfg = paper_config()
    refs = prefetch.hub_refs(cfg)
    lock = prefetch.read_lock(lock_path)
    # Every reference resolved to its commit, under its kind, repo and requested revision.
    for ref in refs:
        assert lock[ref.kind][ref.repo_id][ref.revision] == fake_sha(ref.repo_id, ref.revision)
    # Models downloaded at the commit into the cache --cache named, without the .bin/original copies.
    for repo_id, revision, ignore in fake_hub["snapshot"]:
        assert revision == fake_sha(repo_id, "main")
        assert "original/*" in ignore and "*.bin" in ignore
        snap = cache / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        assert (snap / "config.json").exists()
    assert {s[0] for s in fake_hub["snapshot"]} == {r.repo_id for r in refs if r.kind == "model"}
    # Data sets loaded at the commit with the config and split the workflow loads, once each.
    want = {(r.repo_id, r.config_name, fake_sha(r.repo_id, r.revision), r.split) for r in refs if r.kind == "dataset"}
    assert sorted(fake_hub["load_dataset"]) == sorted(want)

    # The run: hub_lock names the file, offline, with the cache the prefetch filled (HF_HOME); every
    # revision becomes the locked commit, which the offline cache check finds there.
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache / "hub"))
    cfg["hub_lock"] = str(lock_path)
    cfg["offline"] = True
    assert unpinned(copy.deepcopy(cfg))  # `main` everywhere before the lock is applied
    load_config(cfg, [PAPER])
    for ref in prefetch.hub_refs(cfg):
        assert ref.revision == fake_sha(ref.repo_id, "main"), ref.key
    assert unpinned(cfg) == []
    # What the jobs record as provenance is that commit (safealign.models.describe copies the ref).
    from safealign.models import describe

    judge = cfg["judges"]["llama_guard"]["model"]
    assert describe(judge)["revision"] == fake_sha(judge["hub"], "main")


def test_offline_run_without_a_complete_lock_names_the_prefetch(tmp_path):
    cfg = paper_config()
    cfg.update(hub_lock=str(tmp_path / "missing.lock.yaml"), offline=True)
    missing = r"config.hub_lock: .*missing.lock.yaml does not exist; run `python -m safealign.prefetch"
    with pytest.raises(ConfigError, match=missing):
        load_config(copy.deepcopy(cfg), [PAPER])
    # Online, a missing lock leaves the revisions as written.
    online = load_config({**copy.deepcopy(cfg), "offline": False}, [PAPER])
    assert online["models"]["falcon_11b_instruct"]["revision"] == "main"
    # A lock that lacks one reference: offline, that reference is named.
    prefetch.write_lock({"model": {"tiiuae/Falcon-11B-Instruct": {"main": "a" * 40}}}, tmp_path / "part.yaml", "test")
    cfg["hub_lock"] = str(tmp_path / "part.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(copy.deepcopy(cfg), [PAPER])
    assert "config.judges.llama_guard.model: meta-llama/Llama-Guard-3-8B@main is not in the lock file" in str(err.value)
    assert "config.models.falcon_11b_instruct:" not in str(err.value)


def test_a_gated_repo_is_reported_and_the_rest_still_locked(fake_hub, tmp_path, capsys):
    fake_hub["gated"].add("meta-llama/Llama-Guard-3-8B")
    lock_path = tmp_path / "hub.lock.yaml"
    rc = prefetch.main(["--configfile", str(PAPER), "--cache", str(tmp_path / "c"), "--lock", str(lock_path),
                        "--no-capability"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "config.judges.llama_guard.model: model meta-llama/Llama-Guard-3-8B@main: gated" in err
    lock = prefetch.read_lock(lock_path)
    assert "meta-llama/Llama-Guard-3-8B" not in lock["model"]
    assert "tiiuae/Falcon-11B-Instruct" in lock["model"]


def test_write_lock_keeps_entries_of_other_configs(tmp_path):
    path = tmp_path / "lock.yaml"
    prefetch.write_lock({"model": {"a/b": {"main": "1" * 40}}}, path, "one")
    prefetch.write_lock({"model": {"c/d": {"main": "2" * 40}}, "dataset": {"a/b": {"v1": "3" * 40}}}, path, "two")
    assert prefetch.read_lock(path) == {"model": {"a/b": {"main": "1" * 40}, "c/d": {"main": "2" * 40}},
                                        "dataset": {"a/b": {"v1": "3" * 40}}}
    path.write_text("model: [a, b]\n")
    with pytest.raises(ValueError, match="not a hub lock file"):
        prefetch.read_lock(path)


def test_task_datasets_of_the_paper_capability_tasks():
    """lm-eval's task index gives the data sets of the tasks capability.tasks names."""
    pytest.importorskip("lm_eval")
    found = {(r.repo_id, r.config_name) for r in prefetch.task_datasets(["gsm8k"])}
    assert found == {("openai/gsm8k", "main")}
