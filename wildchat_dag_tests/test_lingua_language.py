"""The lingua backend: WildChat's own detector, its names, Nolang, and its labels on real data."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from lingua import LanguageDetectorBuilder

from wildchat_dag.defs.language import lingua_language
from wildchat_dag.defs.language.assets import BACKEND, identify_languages, language_code_version
from wildchat_dag.defs.language.language import LanguageSource, conversation_languages
from wildchat_dag.defs.language.language_names import NOLANG, WILDCHAT_LANGUAGES
from wildchat_dag.defs.language.lingua_language import (
    LinguaIdentifier,
    identify_lingua,
    lingua_version,
    names_and_codes,
)
from wildchat_dag.defs.language.resource import (
    LANGUAGE_BACKEND_ENV_VAR,
    LanguageIdModels,
    configured_backend,
)
from wildchat_dag.loggen.replay import fill_missing_turns, replay_conversations
from wildchat_dag_tests.conftest import SAMPLE
from wildchat_dag_tests.language_sample import sample_utterances
from wildchat_dag_tests.pipeline import Pipeline, materializations, partitions_of
from wildchat_dag_tests.test_language import (
    HTML_MATHS,
    SENTENCES,
    counting_identifier,
    utterances,
)

# Measured on the 187 real conversations of ../shared (benchmarks/bench_language.py): lingua
# gives WildChat's conversation language to every one, fastText to 185 (test_language.py).
LINGUA_AGREES_ON = 187

SCRIPTS = {
    # text: (language, code)
    "你好，请帮我写一首关于大海的短诗，谢谢你的帮助。": ("Chinese", "zh"),
    "こんにちは、海についての短い詩を書くのを手伝ってください。": ("Japanese", "ja"),
    "안녕하세요, 바다에 관한 짧은 시를 쓰는 것을 도와주세요.": ("Korean", "ko"),
    "Привет, помоги мне, пожалуйста, написать короткое стихотворение о море.": ("Russian", "ru"),
    "Привіт, допоможи мені, будь ласка, написати короткий вірш про море.": ("Ukrainian", "uk"),
    "مرحبا، هل يمكنك مساعدتي في كتابة قصيدة قصيرة عن البحر؟": ("Arabic", "ar"),
    "سلام، می‌توانی به من کمک کنی یک شعر کوتاه درباره دریا بنویسم؟": ("Persian", "fa"),
    "שלום, תוכל לעזור לי לכתוב שיר קצר על הים?": ("Hebrew", "he"),
    "Hva er hovedstaden i Norge, og hvor mange mennesker bor det der i dag?": ("Bokmal", "nb"),
    "Can you help me write a short poem about the sea and the wind?": ("English", "en"),
}

BLANK = ["", "   \n\t ", None, "\u200b", "\u200b\u200d\ufeff \u2060\n"]


@pytest.fixture(scope="module")
def lingua() -> LinguaIdentifier:
    # lingua keeps the models it loads for the whole process (about 1.2 GB once a Latin-script
    # text is seen): one identifier for the module, and every later one shares its models.
    return LinguaIdentifier()


@pytest.fixture(scope="module")
def sample_frame() -> tuple[pl.DataFrame, dict[int, str]]:
    # Module-scoped, unlike conftest's wildchat_sample: lingua labels the sample once.
    if not SAMPLE.is_file():
        pytest.skip(f"the real WildChat sample is not at {SAMPLE} (../shared is absent)")
    return sample_utterances([json.loads(line) for line in SAMPLE.read_text().splitlines()])


def test_every_lingua_language_is_named_as_wildchat_names_it_with_an_iso_code():
    named = names_and_codes()
    assert {name for name, _ in named.values()} == WILDCHAT_LANGUAGES
    codes = [code for _, code in named.values()]
    assert len(set(codes)) == len(codes) == 75
    # Every one of lingua 2.1's languages has an ISO 639-1 code; lower case like fastText's.
    assert all(len(code) == 2 and code.islower() for code in codes)


def test_texts_in_many_scripts_get_wildchat_names_and_iso_codes(lingua):
    got = identify_lingua(utterances(list(SCRIPTS)), lingua)
    assert list(zip(got["language"], got["language_code"], strict=True)) == list(SCRIPTS.values())
    assert got["language_source"].unique().to_list() == [LanguageSource.LINGUA]
    assert got["language_confidence"].min() > 0.3
    assert got["language_confidence"].max() <= 1.0
    # A script that only one of lingua's languages writes is certain.
    korean = got.filter(pl.col("language") == "Korean")["language_confidence"]
    assert korean.to_list() == [1.0]


def test_the_seventeen_sentences_of_the_fasttext_tests_get_the_same_names(lingua):
    got = identify_lingua(utterances(list(SENTENCES.values())), lingua)
    assert got["language"].to_list() == list(SENTENCES)


def test_blank_and_zero_width_only_text_is_nolang_and_text_without_letters_too(lingua):
    got = identify_lingua(
        utterances([*BLANK, "123 456", "?!", "\u200bHallo, wie geht es dir?"]), lingua
    )
    blank = got.head(len(BLANK))
    assert blank["language"].to_list() == [NOLANG] * len(BLANK)
    assert blank["language_code"].to_list() == [None] * len(BLANK)
    assert blank["language_confidence"].to_list() == [None] * len(BLANK)
    assert blank["language_source"].to_list() == [LanguageSource.EMPTY] * len(BLANK)
    # Digits and punctuation are text, but lingua finds no language in them: Nolang, as WildChat.
    digits = got.slice(len(BLANK), 2)
    assert digits["language"].to_list() == [NOLANG, NOLANG]
    assert digits["language_code"].to_list() == [None, None]
    assert digits["language_source"].to_list() == [LanguageSource.LINGUA] * 2
    # A zero-width character inside a real text changes nothing.
    assert got["language"][-1] == "German" and got["language_source"][-1] == LanguageSource.LINGUA


def test_labels_are_what_lingua_itself_detects(lingua):
    """The language is taken from lingua's confidence values (which give the confidence too);
    it must be exactly what ``detect_language_of`` answers, ``None`` as Nolang."""
    texts = [*SCRIPTS, *SENTENCES.values(), HTML_MATHS, "merci", "obrigado", "a", "42", "ok ok"]
    detector = LanguageDetectorBuilder.from_all_languages().build()
    expected = [
        language.name.title() if (language := detector.detect_language_of(t)) else NOLANG
        for t in texts
    ]
    assert lingua.predict(texts)["language"].to_list() == expected


def test_batches_keep_the_order_of_texts_and_blanks(lingua, monkeypatch):
    texts = ["Bonjour tout le monde", "", "Guten Morgen zusammen", None, "Buenos días a todos"]
    whole = lingua.predict(texts)
    monkeypatch.setattr(lingua_language, "BATCH_TEXTS", 2)
    assert lingua.predict(texts).equals(whole)
    assert whole["language"].to_list() == ["French", NOLANG, "German", NOLANG, "Spanish"]


def test_code_and_markup_are_english_without_fasttexts_rule(lingua):
    """WildChat had no code rule: lingua itself calls code English, the language of its
    keywords, where fastText needed one."""
    code = "def f(x):\n    return {x: [x * 2]}"
    got = identify_lingua(utterances([HTML_MATHS, code]), lingua)
    assert got["language"].to_list() == ["English", "English"]
    assert got["language_source"].to_list() == [LanguageSource.LINGUA] * 2


def test_each_distinct_text_is_detected_once(lingua):
    counting = counting_identifier(LinguaIdentifier)
    # Long enough to be English to lingua: "Tell me a joke." alone is Finnish to it.
    history = ["Tell me a joke about the weather, please.", "Why did the chicken cross the road?"]
    frame = pl.concat(
        [
            utterances([*history, "Please tell me another one about animals."], 1),
            utterances(history, 2),
        ]
    )
    got = identify_lingua(frame, counting)
    assert counting.texts == 3
    assert got.height == 5 and got["language"].unique().to_list() == ["English"]


def test_a_conversations_language_is_the_most_frequent_over_all_its_turns(lingua):
    chinese = "你好，请帮我写一首关于大海的短诗，谢谢你的帮助。"
    english = "Sure, here is a short poem about the sea and the wind."
    russian = "Привет, помоги мне, пожалуйста, написать короткое стихотворение о море."
    frame = pl.concat(
        [
            # Users in Chinese, the assistant answering in English twice, once in Chinese.
            utterances([chinese, english, chinese, english, chinese, chinese], 1),
            # Empty turns do not outvote the one language found.
            utterances(["", english, "\u200b", ""], 2),
            utterances(["", "  "], 3),
            # A tie goes to the earliest utterance.
            utterances([russian, english], 4),
        ]
    )
    got = dict(conversation_languages(identify_lingua(frame, lingua)).iter_rows())
    assert got == {1: "Chinese", 2: "English", 3: NOLANG, 4: "Russian"}


def test_lingua_gives_wildchats_language_to_the_real_conversations(lingua, sample_frame):
    frame, wildchat = sample_frame
    labelled = identify_lingua(frame, lingua)
    got = dict(conversation_languages(labelled).iter_rows())
    agree = sum(got[cid] == label for cid, label in wildchat.items())
    assert agree >= LINGUA_AGREES_ON, f"{agree} of {len(wildchat)} agree with WildChat"
    # Labelled again, identical rows: lingua's confidences jitter in their last bits.
    some = frame.head(300)
    assert identify_lingua(some, lingua).equals(labelled.head(300))


def test_the_resource_picks_the_backend():
    lingua_id, fasttext_id = (LanguageIdModels(backend=b) for b in ("lingua", "fasttext"))
    # Unset in the launchpad, the backend is the environment's (fastText unless it says).
    assert LanguageIdModels().backend == configured_backend()
    frame = utterances(["Привет, как дела? Помоги мне написать письмо.", ""])
    by_lingua = lingua_id.labeller()(frame)
    assert by_lingua["language"].to_list() == ["Russian", NOLANG]
    assert by_lingua["language_source"].to_list() == [LanguageSource.LINGUA, LanguageSource.EMPTY]
    by_fasttext = fasttext_id.labeller()(frame)
    assert by_fasttext["language_source"].to_list() == [
        LanguageSource.FASTTEXT,
        LanguageSource.EMPTY,
    ]
    # Named without a path (the dataset card prints it), and without loading a model.
    assert lingua_id.model_description().startswith(f"lingua {lingua_version()} ")
    described = fasttext_id.model_description()
    assert described.startswith("fastText lid.176 (lid.176.ftz, sha256 ") and "/" not in described


def test_the_backend_comes_from_the_environment_and_names_the_code_version(monkeypatch):
    # The asset's code version is its backend's, as the environment named it when loaded.
    versions = set(identify_languages.code_versions_by_key.values())
    assert versions == {language_code_version(configured_backend())}
    monkeypatch.setenv(LANGUAGE_BACKEND_ENV_VAR, "lingua")
    assert configured_backend() == "lingua"
    monkeypatch.delenv(LANGUAGE_BACKEND_ENV_VAR)
    assert configured_backend() == "fasttext"
    monkeypatch.setenv(LANGUAGE_BACKEND_ENV_VAR, "langid")
    with pytest.raises(ValueError, match="fasttext, lingua"):
        configured_backend()
    # fastText's days stay fresh; lingua's are another version, which names its release.
    assert language_code_version("fasttext") == "language-v1"
    assert language_code_version("lingua") == f"language-v1-lingua-{lingua_version()}"


@pytest.mark.usefixtures("ip_salt")
def test_the_asset_labels_real_conversations_with_lingua_when_configured(tmp_path, wildchat_sample):
    conversations = [
        {**c, "conversation": fill_missing_turns(c["conversation"])} for c in wildchat_sample
    ]
    replayed = replay_conversations(
        conversations, tmp_path / "logs", start_date=date(2024, 4, 1), days=2
    )
    partitions = partitions_of(tmp_path / "logs")
    p = Pipeline(
        tmp_path / "logs",
        tmp_path / "w.duckdb",
        resources={"language_id": LanguageIdModels(backend="lingua")},
    )
    p.ingest(*partitions)
    p.link(*partitions)
    p.identify_languages(*partitions)
    got = dict(p.table("conversation_languages").select("conversation_id", "language").iter_rows())
    agree = sum(
        got[conv.turn_ids[0]] == conversations[conv.source_index]["language"] for conv in replayed
    )
    assert len(got) == len(replayed) == 187
    assert agree >= LINGUA_AGREES_ON, f"{agree} of 187 agree with WildChat's label"
    sources = set(p.table("utterance_languages")["language_source"])
    assert sources <= {LanguageSource.LINGUA, LanguageSource.EMPTY}
    assert LanguageSource.LINGUA in sources

    for key in ("utterance_languages", "conversation_languages"):
        latest = materializations(p, key)[-1]
        assert latest.metadata["backend"].value == "lingua"
        assert latest.metadata["model"].value.startswith(f"lingua {lingua_version()}")
        assert "code_fallback_confidence" not in latest.metadata
    # Unless the environment chose lingua, the code version (fixed when the code loaded)
    # names another backend: the run says so.
    run = p.instance.get_runs(limit=1)[0]
    logs = [e.user_message for e in p.instance.all_logs(run.run_id)]
    warned = any(f"{LANGUAGE_BACKEND_ENV_VAR}=lingua" in (m or "") for m in logs)
    assert warned == (BACKEND != "lingua")


WARM_WORKER_PRELOAD = """
import json, os, psutil
from wildchat_dag import warm_runs
from wildchat_dag.defs.language.lingua_language import WARM_TEXTS
from wildchat_dag.defs.language.resource import _lingua_identifier

process = psutil.Process()
before = process.memory_info().rss
warm_runs.preload()
preloaded = process.memory_info().rss
_lingua_identifier().predict(WARM_TEXTS + tuple(%r))
print(json.dumps([before, preloaded, process.memory_info().rss]))
"""


@pytest.mark.slow
def test_a_warm_worker_with_lingua_configured_loads_its_models_before_its_first_run(tmp_path):
    """A warm worker's preload loads lingua's models when lingua is the configured backend, so
    its first run does not: labelling a day's texts afterwards adds next to no memory, where
    loading the models takes about a gigabyte."""
    import os
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WILDCHAT_")},
        "WILDCHAT_MODE": "demo",
        "WILDCHAT_HOME": str(tmp_path),
        LANGUAGE_BACKEND_ENV_VAR: "lingua",
    }
    done = subprocess.run(
        [sys.executable, "-c", WARM_WORKER_PRELOAD % list(SCRIPTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, preloaded, labelled = json.loads(done.stdout.strip().splitlines()[-1])
    mib = 1 << 20
    assert labelled - preloaded < 100 * mib, (before, preloaded, labelled)
    assert preloaded - before > 500 * mib, (before, preloaded, labelled)
