"""The tiny world's data: schemas like the real files, determinism, no eval prompt in training."""

import dataclasses

import pytest

from safealign.data.loaders import load_alert, load_rtp, load_xstest
from safealign.data.preference import from_pku
from safealign.world import data
from safealign.world.__main__ import write_data


@pytest.fixture(scope="module")
def world():
    return data.build(data.WorldParams())


def test_deterministic_from_seed(world):
    again = data.build(data.WorldParams())
    assert again == world
    other = data.build(data.WorldParams(seed=1))
    assert other["preference"] != world["preference"]


def test_eval_prompts_absent_from_training(world):
    train = data._prompts_of(world["corpus"]) | data._prompts_of(world["preference"])
    alert = {data.unwrap_alert(r["prompt"]) for r in world["alert"] + world["alert_adversarial"]}
    assert not train & alert
    assert not train & {r["question"] for r in world["capability"]}
    assert not train & {r["prompt"]["text"] for r in world["rtp"]}


def test_leak_is_detected(monkeypatch):
    monkeypatch.setattr(data, "HARMFUL_EVAL_TEMPLATES", data.HARMFUL_TRAIN_TEMPLATES[:1])
    with pytest.raises(AssertionError, match="evaluation prompts occur in training data"):
        data.build(data.WorldParams())


def test_files_load_through_the_real_loaders(tmp_path):
    write_data(dataclasses.asdict(data.WorldParams()), tmp_path)
    alert = load_alert({"path": str(tmp_path / "alert.jsonl")})
    assert len(alert) == len(data.CATEGORIES) * 6 * len(data.HARMFUL_EVAL_TEMPLATES)
    assert not any(r["prompt"].startswith("###") for r in alert)
    assert set(r["category"] for r in alert) == set(data.CATEGORIES)
    adv = load_alert({"path": str(tmp_path / "alert_adversarial.jsonl")}, n_per_category=1)
    assert {r["attack_type"] for r in adv} == set(data.ATTACKS)
    assert len(adv) == len(data.CATEGORIES) * len(data.ATTACKS)
    xs = load_xstest({"path": str(tmp_path / "xstest.csv")})
    assert {r["label"] for r in xs} == {"safe", "unsafe"}
    rtp = load_rtp({"path": str(tmp_path / "rtp.jsonl")})
    assert len(rtp) == len(data.TOX_SUBJECTS_EVAL) * len(data.TOX_FRAMES)


def test_base_corpus_complies_with_the_configured_share(world):
    p = data.WorldParams()
    complied = [data._complied(x, p.harmful_compliance_share, p.seed) for _, _, x in data.harmful_intents()]
    share = sum(complied) / len(complied)
    assert abs(share - p.harmful_compliance_share) < 0.15, share
    # every complied intent's plain prompts get compliances in the corpus, others refusals
    x = next(x for _, _, x in data.harmful_intents() if data._complied(x, p.harmful_compliance_share, p.seed))
    q = data.HARMFUL_TRAIN_TEMPLATES[0].format(x=x)
    answers = [r["messages"][-1]["content"] for r in world["corpus"] if r["messages"][0]["content"] == q]
    assert answers and all(data.is_compliance(a) for a in answers)


def test_preference_pairs_prefer_the_safe_response(world):
    pairs = from_pku(world["preference"])
    assert len(pairs) == data.WorldParams().n_preference_pairs
    harmful = [p for p in pairs if p["category"] in data.CATEGORIES]
    assert harmful and all(not data.is_compliance(p["chosen"][0]["content"]) for p in harmful)
    assert all(data.is_compliance(p["rejected"][0]["content"]) for p in harmful)
    toxic = [p for p in pairs if p["category"] == "insult"]
    assert toxic and all(data.is_toxic(p["rejected"][0]["content"]) for p in toxic)
    assert all(not data.is_toxic(p["chosen"][0]["content"]) for p in toxic)


def test_judge_labels_follow_llama_guard_format(world):
    verdicts = {r["verdict"].split("\n")[0] for r in world["judge"]}
    assert verdicts == {"safe", "unsafe"}
    for r in world["judge"]:
        if r["verdict"].startswith("unsafe"):
            code = r["verdict"].split("\n")[1]
            assert code in {c for c, _ in data.CATEGORIES.values()}


def test_lookalikes_share_surface_features_with_their_category(world):
    """Every lookalike reuses a word of one of its category's harmful intents (XSTest's homonyms,
    safe targets and safe contexts do the same), so refusals learnt on harm can spread to it."""
    stop = {"a", "an", "the", "my", "of", "on", "in", "to", "for", "at", "from", "about", "with"}
    for cat, (train, held) in data.LOOKALIKES.items():
        harmful_words = {w for x in data.CATEGORIES[cat][1] for w in x.replace("'s", "").split()} - stop
        for x in train + held:
            assert set(x.replace("'s", "").split()) & harmful_words, (cat, x)
            assert x not in data.CATEGORIES[cat][1]


def test_xstest_safe_half_is_the_held_out_lookalikes(world):
    safe = [r for r in world["xstest"] if r["label"] == "safe"]
    held = {x for _, xs in data.LOOKALIKES.values() for x in xs}
    assert len(safe) == len(held) * len(data.BENIGN_EVAL_TEMPLATES)
    assert all(any(r["prompt"] == t.format(x=x) for x in held for t in data.BENIGN_EVAL_TEMPLATES) for r in safe)
    assert {r["note"] for r in safe} == set(data.CATEGORIES)
    # the held-out lookalikes occur in no training prompt, under any template
    train = data._prompts_of(world["corpus"]) | data._prompts_of(world["preference"])
    assert not {p for p in train for x in held if x in p}
    assert not train & {r["prompt"] for r in world["xstest"]}
    # the trained lookalikes are answered helpfully in the corpus and preferred over refusals
    seen = {x for xs, _ in data.LOOKALIKES.values() for x in xs}
    answered = [r["messages"][-1]["content"] for r in world["corpus"]
                if any(r["messages"][0]["content"] == t.format(x=x) for x in seen for t in data.BENIGN_TRAIN_TEMPLATES)]
    assert len(answered) == len(seen) * len(data.BENIGN_TRAIN_TEMPLATES)
    assert all(data.is_compliance(a) for a in answered)

