"""A tiny, randomly initialised Detoxify checkpoint, built entirely offline.

Detoxify downloads its real weights from GitHub releases, which the tests cannot reach. A
two-layer BERT with a hand-written vocabulary is enough to run the *real* ``detoxify.Detoxify``
loading and prediction code: ``torch.load`` of the checkpoint, ``from_pretrained`` of the config
and tokenizer from a local folder, truncation at 512 tokens, sigmoid scores per class. Its scores
are meaningless (about 0.5), so tests assert shape, determinism and plumbing, not meaning.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import transformers

ORIGINAL_CLASSES: tuple[str, ...] = (
    "toxic",
    "severe_toxic",
    "obscene",
    "threat",
    "insult",
    "identity_hate",
)
"""Detoxify 'original' labels; Detoxify itself renames toxic -> toxicity and so on."""

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Whole words make typical test text tokenize into realistic, word-sized pieces; everything else
# falls back to single letters, which the "##a".."##z" pieces guarantee. (Whitespace-separated.)
_COMMON_WORDS = """
the be to of and a in that have i it for not on with he as you do at this but his by from they
we say her she or an will my one all would there their what so up out if about who get which go
me when make can like time no just him know take people into year your good some could them see
other than then now look only come its over think also back after use two how our work first
well way even new want because any these give day most us is are was were been has had did does
am hello hi hey world please thanks thank yes okay ok sorry help write code python story poem
email letter essay list question answer explain why where more less very much many few bad
great nice love hate kill die dead death hurt pain stupid idiot dumb ugly fool shut threat
attack steal drug drugs gun guns weapon bomb fight war hit punch slap murder crime police
law money pay buy sell free price cost job home house car city country school book game
movie music song food water fire sun moon night morning today tomorrow yesterday week month
man woman men women child children boy girl friend family mother father brother sister life
old young big small long short high low right left true false same different last next own
here again never always something nothing everything someone anyone everyone thing things
should must may might shall need feel tell ask call try keep let put mean seem turn start
show hear play run move live believe bring happen stand lose meet include continue set learn
change lead understand watch follow stop create speak read allow add spend grow open walk
win offer remember consider appear wait serve send expect build stay fall cut reach remain
data model text word words name number part place case point group problem fact hand eye
chat chatbot assistant user message reply translate summary summarize function error file
"""

_SUFFIXES = ("##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##ness", "##ment")


def _vocabulary() -> list[str]:
    """Special tokens, characters, words and "##" pieces, without duplicates, in a fixed order.

    BERT's basic tokenizer splits every punctuation character off, so each needs its own entry;
    "##" + every letter and digit lets WordPiece spell out any lowercase ASCII word without
    [UNK], so long texts make as many tokens as a real vocabulary would (roughly one per word).
    """
    pieces = [
        *_SPECIAL_TOKENS,
        *string.ascii_lowercase,
        *string.digits,
        *string.punctuation,
        *_COMMON_WORDS.split(),
        *_SUFFIXES,
        *(f"##{c}" for c in string.ascii_lowercase + string.digits),
    ]
    return list(dict.fromkeys(pieces))


def build_tiny_checkpoint(
    folder: Path,
    *,
    classes: Sequence[str] = ORIGINAL_CLASSES,
    seed: int = 0,
    max_positions: int = 512,
) -> Path:
    """A two-layer BERT of hidden size 32 (about 200 KB): see ``build_random_checkpoint``."""
    return build_random_checkpoint(folder, classes=classes, seed=seed, max_positions=max_positions)


def build_random_checkpoint(
    folder: Path,
    *,
    classes: Sequence[str] = ORIGINAL_CLASSES,
    seed: int = 0,
    max_positions: int = 512,
    words: Iterable[str] = (),
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
) -> Path:
    """Write a randomly initialised Detoxify checkpoint into ``folder`` and return the path of
    the ``.ckpt``. ``words`` join the vocabulary (so that real text tokenizes into word-sized
    pieces, as with a real model's vocabulary); the sizes set the network's (12, 768, 12, 3072
    is BERT-base, the compute of Detoxify's released models).

    ``folder / "model"`` holds config.json, vocab.txt and the tokenizer files; the checkpoint
    names that folder as its ``model_type``, because Detoxify always calls
    ``from_pretrained(model_type)`` and a local folder keeps that offline. ``max_positions`` is
    both the model's position limit and the tokenizer's ``model_max_length``, so Detoxify's
    ``truncation=True`` cuts where the model would otherwise fail. The same ``seed`` gives the
    same weights.
    """
    folder = Path(folder)
    model_folder = folder / "model"
    model_folder.mkdir(parents=True, exist_ok=True)

    vocabulary = list(dict.fromkeys([*_vocabulary(), *(w.lower() for w in words)]))
    (model_folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": max_positions,
    }
    (model_folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    # transformers 5 ignores BertTokenizer(vocab_file=...); from_pretrained reads vocab.txt.
    tokenizer = transformers.BertTokenizer.from_pretrained(str(model_folder))
    # Saving adds tokenizer.json, which later loads read directly, without sentencepiece.
    tokenizer.save_pretrained(str(model_folder))

    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        num_labels=len(classes),
    )
    config.save_pretrained(str(model_folder))

    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": str(model_folder),
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(classes),
                }
            },
            "dataset": {"args": {"classes": list(classes)}},
        },
        "state_dict": model.state_dict(),
    }
    path = folder / "tiny-detoxify.ckpt"
    torch.save(checkpoint, path)
    return path
