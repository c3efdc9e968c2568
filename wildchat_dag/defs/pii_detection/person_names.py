"""Names found by the PERSON rule's own conditions, not by the NER model.

The PERSON rule (``redaction_rules.yaml``) redacts two or more capitalized words, letters only,
that come just after a cue phrase ("my name is", "hi", "dear", "regards,", "name:", ...). Its
candidates used to come from spaCy's small English model alone, which misses about one such name
in 13 ("Hello Nadia Osei,", "Name: Nadia Vasquez.", "Thanks,\\nMateo Mbeki"). This module reads
the rule and finds the spans it describes directly:

1. **Cue.** One of ``rule.cues_before``, case-insensitively, at the start of a word: the character
   before it is not a letter, digit, mark or underscore ("chi Nadia" is not "hi"). A letter of a
   script written without spaces (Han, kana, Hangul, Thai, ...) does not count as part of the
   cue's word: in "你好hi Nadia Osei" the cue starts a word although ``\\b`` sees none there.
2. **Gap.** ``rule.cue_gap`` (the rule's own regex), then the name starts at once.
3. **Run.** The longest run of capitalized words separated by spaces or tabs: an uppercase letter
   and then letters, never a digit or punctuation, never across a line break (the rule's
   ``pattern``). A word stops at a letter of an unspaced script ("Mateo Mbeki你好" is "Mateo
   Mbeki"). A last word that is only the head of a longer token, glued to a digit, a mark, or to
   an apostrophe or hyphen followed by a letter ("Mary Ann O'Brien", "Smith-Jones"), is dropped
   ("Mary Ann"); a possessive "'s" is not such a glue ("John Smith's" gives "John Smith").
4. **Precision.** The longest prefix of the run, of two words or more, that ``looks_like_a_name``.
   A span preceded by one of ``rule.not_preceded_by`` is dropped (it cannot be, after a gap
   character, but the rule says so and a rule file may change the gap).

``looks_like_a_name``: the design
---------------------------------
After a cue, Title Case is common in text that names nobody: "I am Very Happy", "Dear Hiring
Manager", "Hi All Please Find Attached", "Thanks, Good Luck", and titles of works. Word
frequency alone cannot tell these from names: in wordfreq's English list "john" (Zipf 5.4) is
as common as "happy" (5.4), and "smith" (4.9) more common than "luck" (4.9). Lists of names
alone are too noisy: Faker's lists, pooled over its locales, hold "The", "Will", "Good", "Best",
"Can" and "My" among 45,000 names. The filter combines the two, per word:

- *support*: in how many of Faker's locales (one vote a locale, Latin-script entries only, of
  its given-name or of its surname lists) the word is a name, plus short curated lists for
  origins Faker only has in other scripts (Chinese pinyin and Cantonese, Korean and Vietnamese
  romanizations, Arabic transliterations). Keys are case-folded, and also looked up without
  diacritics ("Jose" for "José").
- *Zipf*: wordfreq's English frequency of the case-folded word.

A listed word is a **strong** given name (or surname) when it is not everyday vocabulary
(Zipf below ``VOCABULARY_ZIPF``), or when many locales list it (support of ``BROAD_SUPPORT`` or
more) and it is not among the most common English words (Zipf below ``COMMON_ZIPF``):
"Nadia", "Priya", "Osei" (uncommon words), "John", "Grace", "Smith", "White" (broadly listed),
but not "Will", "May", "Love", "Good", "Best", "Day" or "Long". A word no list knows counts as a
name only when it is **rare** in English (Zipf below ``RARE_ZIPF``) and not made like an English
word ("-ing", "-tion", "-ies", "-ment", ...: "Disclaiming Warranties"): "Mbeki", "Łukasiewicz".
A run is a name when:

- its first word is a strong given name or a rare word; or a surname of an origin that writes
  it first (curated East Asian ones and Faker's romanized Chinese ones: "Li Wei", "Wang Fang");
  or an honorific ("Mr", "Dr", "Prof", ...: "Dr Nadia Osei", "Mr Kowalczyk"); or a listed but
  weak given name followed only by broadly listed surnames ("Will Smith", not "May Convey");
- every later word is a strong given name or surname, a rare word, or a one-letter initial that
  is not the last word ("John F Kennedy"; "I" and "A" are never initials);
- an all-capitals word inside a run that is not all capitals ("John Smith CEO") is an acronym,
  and a word with an inner capital that no name prefix explains ("ChatGPT", "OpenAI", but not
  "McDonald", "DeShawn", "DiCaprio") is a brand: neither is a name word. A run in capitals
  throughout ("DEAR JOHN SMITH") is judged word by word like any other.

Since the span is the longest qualifying prefix, trailing words that are not names fall away:
"Nadia Osei Thanks" gives "Nadia Osei", "Hi John Please Find Attached" gives nothing (one word).

How the thresholds were chosen
------------------------------
A grid over the four thresholds, measured on:

- names: 150 given + surname pairs from each of 36 Faker language groups (5,400), each after
  "Hi". *In-list* recall uses all lists; *leave-one-out* recall removes the group's own locales
  from the lists first, the case of a name of an origin the lists lack;
- decoys: every window of 2 to 5 words of licence texts (Debian's GPL-3, Apache-2.0, GFDL-1.3,
  MPL-2.0, Artistic; 10,869 windows) and of Python standard library docstrings (25,271), put in
  Title Case after "Hi": Title-Case prose after a cue, far more of it than real text has.

At the chosen ``RARE_ZIPF = 3.0, VOCABULARY_ZIPF = 4.0, BROAD_SUPPORT = 3, COMMON_ZIPF = 5.6``:
in-list recall 98.8%, leave-one-out recall 93.4% (94.2% without English, whose names rest most
on lists); no false positive on the licence prose; 104 windows (0.41%) of the docstrings, 4 of
them real names ("Kent Beck", "Vinay Sajip") and the rest code identifiers in Title Case ("Ascii
Hexadecimal", "Stdout Stderr"). Around it:

- ``RARE_ZIPF`` 2.5 / 3.0 / 3.5: leave-one-out recall 89.7 / 93.4 / 94.9%, decoy windows
  flagged 0.15 / 0.29 / 0.56% of all. 3.0 takes most of the recall for half the false positives
  of 3.5.
- ``VOCABULARY_ZIPF`` 3.5 / 4.0 / 4.5: in-list recall 98.1 / 98.8 / 99.2%, decoys 101 / 104 /
  108.
- ``BROAD_SUPPORT`` 2 / 3 / 5: in-list recall 99.2 / 98.8 / 97.9%, decoys 108 / 104 / 98.
- ``COMMON_ZIPF`` 5.5 / 5.6 / 6.0: the same recall; 6.0 adds 21 decoys ("As Long As", "May Be
  Necessary"). 5.6 keeps the surnames "White", "Black" and "Young" (Zipf 5.4 to 5.5).
- Requiring some listed word in every run (no name of rare words alone) cut leave-one-out recall
  to 58%: rejected, a leaked name costs more than a redacted phrase.

On the real WildChat sample in ``shared/data`` (1,491 English utterances, 1.5 M characters) it
finds 5 distinct spans, all names. ``wildchat_dag_tests/test_person_names.py`` measures recall
and precision on its labelled set (both 1.0) and prints how they move with the thresholds.

Known misses: hyphenated and apostrophe names keep only their leading whole words ("Mary Ann
O'Brien" gives "Mary Ann"; "Jean-Pierre Dupont" nothing), as the rule's pattern allows no
punctuation; "John F. Kennedy" gives nothing (the period ends the run at "John F", and an
initial does not end a name); a name made of common words listed by few locales ("Hi Lie Pop",
"Hi Will Power"). Known false positives: two rare words that are not a name ("Hi Lorem Ipsum"),
and places written like names ("This is Hong Kong"); those that recur across conversations fall
to the rule's frequency limit (``skip_if_in_conversations``), with the public figures.

Cost: the lists load once per process, lazily (Faker's person providers, about 0.4 s; wordfreq's
English list on the first lookup). A text costs one regex scan for cues; only the runs after a
cue are looked up, each word once per process (cached): about 4 M characters a second here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import regex

from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_CUE_GAP, EntityRule

PERSON_NAMES_VERSION = "cued-names-v1"
RECOGNIZER_NAME = "CuedNameRecognizer"
# Above spaCy's 0.85, so that a longer NER span around a cued name (which the rule's pattern
# may reject) never makes Presidio drop the cued one as contained in it.
SCORE = 0.9

# Thresholds of the precision filter (module docstring: how they were measured).
RARE_ZIPF = 3.0
VOCABULARY_ZIPF = 4.0
BROAD_SUPPORT = 3
COMMON_ZIPF = 5.6
# Support a curated entry counts for: as much as a broadly listed name.
CURATED_SUPPORT = BROAD_SUPPORT

# Scripts written without spaces between words: their letters neither extend a Latin word nor
# make a cue the tail of one (the same scripts as text_normalization's).
UNSPACED = (
    r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Bopomofo}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
)
_WORD_CHAR = rf"[[\p{{L}}\p{{N}}\p{{M}}_]--[{UNSPACED}]]"
_LETTER = rf"[\p{{L}}--[{UNSPACED}]]"
_UPPER = rf"[\p{{Lu}}--[{UNSPACED}]]"
# A run of capitalized words separated by blanks (the rule's pattern, less unspaced letters).
_RUN = regex.compile(rf"{_UPPER}{_LETTER}*(?:[ \t]+{_UPPER}{_LETTER}*)*", regex.V1)
_WORD = regex.compile(r"[^ \t]+")
# What makes the last word the head of a longer token (O'Brien, Smith-Jones, Smith2, a mark).
_GLUED = regex.compile(r"[\p{N}\p{M}_]|['’\-‐][\p{L}]", regex.V1)
_POSSESSIVE = regex.compile(r"['’]s(?![\p{L}\p{N}])", regex.V1)
# A capital inside a word that a name prefix explains: McDonald, MacArthur, DeShawn, LaToya,
# DiCaprio, VanDyke; any other (ChatGPT, OpenAI, YouTube) marks a brand.
_NAME_PREFIX_CAMEL = regex.compile(
    r"(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|St|Fitz)\p{Lu}\p{Ll}+", regex.V1
)
_INNER_CAPITAL = regex.compile(r"\p{Ll}\p{Lu}", regex.V1)
# Endings of English derived and inflected words; an unlisted rare word made so is vocabulary
# ("Disclaiming Warranties", "Procuring Conveyance"), not a name.
_ENGLISH_SUFFIX = regex.compile(
    r".{3}(?:ing|ings|ion|ions|ment|ments|ness|ies|ity|ated|ized|ised|ively|ously|ally|ance"
    r"|ence|able|ible|ism|ist|ists|ful|less|ship)$"
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


HONORIFICS = frozenset(
    _words("mr mrs ms miss mx dr prof professor sir dame madam madame mister monsieur señor señora")
)

# Romanized names of origins Faker lists only in their own scripts. English words are left out
# (pinyin "He", "Ma", "Sun", "Long", "Fan"; Vietnamese "Do", "Van"), so that they never vouch
# for a run.
CHINESE_SURNAMES = _words(
    "Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Zhu Hu Guo Gao Lin Luo Zheng Liang Xie"
    " Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Pan Yuan Cai Jiang Yu Du Ye Cheng Wei Su"
    " Lyu Lu Ding Ren Shen Yao Zhong Cui Liao Shi Jin Jia Xia Fu Fang Zou Xiong Bai Meng Qin Qiu"
    " Hou Yin Xue Yan Duan Lei Tao Mao Hao Gu Gong Shao Qian Dai Kong Kang Qi Niu Ouyang Situ"
    " Wong Chan Leung Cheung Lau Ng Chow Lam Tse Yip Kwok Tsang Chung Fung Mak Lee Lim Teo Goh"
    " Ong Koh Chua Wee Yeo Chia"
)
KOREAN_SURNAMES = _words(
    "Kim Choi Jung Jeong Kang Cho Yoon Jang Shin Kwon Hwang Ahn Seo Jeon Baek Yoo Bae Heo"
)
VIETNAMESE_SURNAMES = _words("Nguyen Tran Pham Hoang Huynh Phan Vu Vo Dang Bui Ngo Duong Ly")
EAST_ASIAN_GIVEN = _words(
    "Wei Fang Min Jing Yan Hui Ying Xin Jun Hao Ming Chao Qiang Jie Ping Yong Juan Xiu Mei Lan"
    " Hua Xiaoming Xiuying Xiaoyan Jianguo Jianhua Zihan Yuxuan Haoran Yichen Zhiwei Jiahui Xinyi"
    " Yuting Shuang Lina Tingting Jingjing Lili Zhen Rui Ning Yun Jian Liang Hai Guang Xiang Zhi"
    " Wen Qing Ling Yue Xuan Zhuo Zeyu Yuhang Ziyi Muchen Ruoxi Xiaoling Xiaohui Zhihao Jiayi"
    " Minjun Seojun Jiwoo Seoyeon Jiho Haneul Yuna Soyeon Jisoo Jimin Hyun Joon Eun Soo Hyejin"
    " Anh Linh Minh Huong Thao Trang Tuan Hung Dung Hoa Thanh Quang Duc Hieu Khanh Phuong Ngoc"
)
ARABIC_GIVEN = _words(
    "Muhammad Mohammed Mohamed Mohammad Ahmad Ahmed Mahmoud Mustafa Mostafa Omar Umar Ali Hassan"
    " Hasan Hussein Husain Ibrahim Ismail Yusuf Youssef Yousef Khalid Khaled Tariq Karim Kareem"
    " Hamza Bilal Faisal Saeed Salim Salem Nasser Nasir Rashid Walid Ziad Samir Sami Adel Amir"
    " Anwar Jamal Majid Abdullah Abdulrahman Abdelrahman Abdelaziz Fatima Fatma Aisha Aysha"
    " Khadija Maryam Mariam Zainab Zaynab Layla Leila Noor Nour Huda Hana Amina Samira Yasmin"
    " Yasmine Salma Rania Dalia Rana Reem Lina Dina Amal Iman Safiya Sara Jana"
)
ARABIC_SURNAMES = _words(
    "Haddad Khoury Nasser Mansour Saleh Hamdan Rahman Abdullah Farouk Farouq Sayed Suleiman"
    " Sulaiman Darwish Barakat Aziz Hakim Bakr Othman Osman Hashemi Hosseini Qureshi Siddiqui"
    " Chaudhry Khalil Ibrahim Hassan Mahmoud Youssef Habib Najjar Sabbagh Tamimi Masri Shami"
    " Halabi Bitar Zayed Maktoum Ghanem Abboud Awad Haddadin Azzam Khatib Amin"
)


# A word of a Faker list that can be compared with English text: Latin script, capitalized.
_LATIN_NAME_WORD = regex.compile(r"\p{Lu}[\p{Latin}\p{M}]+|\p{Lu}", regex.V1)
# Faker locales whose romanized surnames are written first.
_SURNAME_FIRST_LOCALES = frozenset({"zh_CN", "zh_TW"})


def _fold(word: str) -> str:
    return word.casefold()


def _plain(word: str) -> str:
    """Without diacritics: people often drop them ("Jose Garcia")."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class _NameLists:
    """Given-name and surname support, from Faker's person providers and the curated lists."""

    def __init__(self, leave_out: frozenset[str] = frozenset()) -> None:
        """``leave_out``: Faker locales not to read (to measure names of an origin we lack)."""
        given: dict[str, set[str]] = defaultdict(set)
        surnames: dict[str, set[str]] = defaultdict(set)
        for locale, kind, names in _faker_name_lists():
            if locale in leave_out:
                continue
            target = given if kind == "given" else surnames
            for name in names:
                for word in name.split():
                    if _LATIN_NAME_WORD.fullmatch(word):
                        for key in {_fold(word), _plain(word)}:
                            target[key].add(locale)
        self.given: dict[str, int] = {k: len(v) for k, v in given.items()}
        self.surnames: dict[str, int] = {k: len(v) for k, v in surnames.items()}
        east_asian_surnames = CHINESE_SURNAMES + KOREAN_SURNAMES + VIETNAMESE_SURNAMES
        for names, target in (
            (EAST_ASIAN_GIVEN + ARABIC_GIVEN, self.given),
            (east_asian_surnames + ARABIC_SURNAMES, self.surnames),
        ):
            for name in names:
                for key in {_fold(name), _plain(name)}:
                    target[key] = target.get(key, 0) + CURATED_SUPPORT
        # Written surname first, so they may open a run: the curated ones and Faker's
        # romanized Chinese surnames.
        self.surname_first = frozenset(
            {_fold(n) for n in east_asian_surnames}
            | {k for k, locales in surnames.items() if locales & _SURNAME_FIRST_LOCALES}
        )


def _faker_name_lists() -> Iterable[tuple[str, str, Iterable[str]]]:
    """``(locale, "given" | "surname", names)`` for every name list of Faker's person providers.

    Faker (MIT) ships them as Python data; reading the attributes keeps up with new locales.
    """
    import faker.providers.person as person

    for module_info in pkgutil.iter_modules(person.__path__):
        module = importlib.import_module(f"{person.__name__}.{module_info.name}")
        provider = getattr(module, "Provider", None)
        if provider is None:
            continue
        for attribute in dir(provider):
            lowered = attribute.lower()
            if attribute.startswith("_") or "name" not in lowered:
                continue
            if "format" in lowered or "pair" in lowered or "prefix" in lowered:
                continue
            if "first" in lowered:
                kind = "given"
            elif "last" in lowered:
                kind = "surname"
            else:
                continue
            value: Any = getattr(provider, attribute)
            if isinstance(value, list | tuple | dict | set | frozenset):
                yield module_info.name, kind, [n for n in value if isinstance(n, str)]


@functools.cache
def _lists() -> _NameLists:
    return _NameLists()


def preload() -> None:
    """Read the name lists and word frequencies now (about a second) rather than on the first
    text with a cue."""
    _lists()
    _zipf("the")


@functools.lru_cache(maxsize=65536)
def _zipf(key: str) -> float:
    import wordfreq

    return wordfreq.zipf_frequency(key, "en")


# Kinds of word in a run (``_kind``).
HONORIFIC, GIVEN, WEAK_GIVEN, SURNAME, RARE, INITIAL, OTHER = (
    "honorific",
    "given",
    "weak_given",
    "surname",
    "rare",
    "initial",
    "other",
)


def _support(table: dict[str, int], word: str) -> int:
    return max(table.get(_fold(word), 0), table.get(_plain(word), 0))


def _kind(word: str, capitals_throughout: bool) -> str:
    """What a capitalized word is worth as part of a name (module docstring)."""
    if len(word) == 1:
        return OTHER if word in "IA" else INITIAL
    if not capitals_throughout:
        if word.isupper():
            return OTHER  # an acronym inside mixed-case text: CEO, HR, USA
        if _INNER_CAPITAL.search(word) and not _NAME_PREFIX_CAMEL.fullmatch(word):
            return OTHER  # ChatGPT, OpenAI
    key = _fold(word)
    if key in HONORIFICS:
        return HONORIFIC
    lists = _lists()
    zipf = _zipf(key)
    given, surname = _support(lists.given, word), _support(lists.surnames, word)

    def strong(support: int) -> bool:
        return support > 0 and (
            zipf < VOCABULARY_ZIPF or (support >= BROAD_SUPPORT and zipf < COMMON_ZIPF)
        )

    if strong(given):
        return GIVEN
    if strong(surname):
        return SURNAME
    if zipf < RARE_ZIPF and not (given or surname) and _ENGLISH_SUFFIX.search(key):
        return OTHER  # rare, but made like an English word: Disclaiming, Warranties
    if zipf < RARE_ZIPF:
        return RARE
    return WEAK_GIVEN if given else OTHER


_NAME_WORDS = frozenset({GIVEN, SURNAME, RARE})
_STRONG_NAMES = frozenset({GIVEN, SURNAME})


def looks_like_a_name(words: list[str]) -> bool:
    """Whether capitalized ``words`` (a whole run after a cue) read as a person's name.

    See the module docstring for the design and how its thresholds were measured.
    """
    if len(words) < 2:
        return False
    capitals_throughout = all(w.isupper() for w in words)
    kinds = [_kind(w, capitals_throughout) for w in words]
    first, rest = kinds[0], kinds[1:]
    # Initials inside a name only ("John F Kennedy", "Mr J Smith"): a run that ends in one ("Hi
    # John A Quick Question" gives "John A") names nobody more than its one word does.
    if rest[-1] == INITIAL:
        return False
    if not all(k in _NAME_WORDS or k == INITIAL for k in rest):
        return False
    if first in (GIVEN, RARE, HONORIFIC):
        return True
    if first == SURNAME:
        # Surname first: the East Asian order ("Li Wei", "Wang Fang").
        return _fold(words[0]) in _lists().surname_first
    if first == WEAK_GIVEN:
        # "Will Smith": a given name that is also a common word, vouched for by broadly listed
        # surnames after it (not by given names, "An Edit", nor by rarer surnames, "May Convey").
        surnames = _lists().surnames
        return all(
            k == SURNAME and _support(surnames, w) >= BROAD_SUPPORT
            for k, w in zip(rest, words[1:], strict=True)
        )
    return False


class _CuedNamePattern:
    """A rule's cues and gap, compiled once."""

    def __init__(self, rule: EntityRule) -> None:
        alternatives = []
        for cue in sorted(rule.cues_before, key=len, reverse=True):
            escaped = regex.escape(cue)
            # A cue that starts with a letter or digit must start a word (not "chi" for "hi").
            starts_word = cue[:1].isalnum()
            alternatives.append(rf"(?<!{_WORD_CHAR}){escaped}" if starts_word else escaped)
        gap = rule.cue_gap if rule.cue_gap is not None else DEFAULT_CUE_GAP
        # The gap is the rule's own regex (Rust syntax; its character classes read the same).
        self.cue = regex.compile(
            rf"(?:{'|'.join(alternatives)})(?:{gap})(?={_UPPER})",
            regex.V1 | regex.IGNORECASE,
        )
        self.not_preceded_by = tuple(rule.not_preceded_by)


@functools.lru_cache(maxsize=32)
def _compiled(rule: EntityRule) -> _CuedNamePattern:
    return _CuedNamePattern(rule)


def _run_words(text: str, start: int) -> list[tuple[int, int]]:
    """Offsets of the capitalized words of the run starting at ``start``; a glued last word
    (the head of O'Brien, Smith-Jones, Smith2) is left out."""
    run = _RUN.match(text, start)
    if run is None:
        return []
    words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(run.group())]
    end = run.end()
    # (A letter of an unspaced script ends a word without gluing: "Mbeki你好".)
    if words and _GLUED.match(text, end) and not _POSSESSIVE.match(text, end):
        words.pop()
    return words


def cued_name_spans(text: str, rule: EntityRule) -> list[tuple[int, int]]:
    """``(start, end)`` of each name that comes right after one of ``rule``'s cues.

    The longest run of capitalized words after a cue and the rule's gap, cut to its longest
    prefix of two words or more that ``looks_like_a_name``; sorted, without duplicates.
    """
    if not rule.cues_before:
        return []
    compiled = _compiled(rule)
    spans: set[tuple[int, int]] = set()
    # A cue's match ends where its name would start, so the next cue is searched from there:
    # in "Hi Dear Nadia Osei", "Hi" is followed by no name, "Dear" by one.
    for cue in compiled.cue.finditer(text):
        start = cue.end()
        if any(text.endswith(c, 0, start) for c in compiled.not_preceded_by):
            continue
        words = _run_words(text, start)
        for count in range(len(words), 1, -1):
            if looks_like_a_name([text[s:e] for s, e in words[:count]]):
                spans.add((start, words[count - 1][1]))
                break
    return sorted(spans)


def build_cued_name_recognizer(rule: EntityRule):
    """A Presidio recognizer (English, ``PERSON``) of ``cued_name_spans`` under ``rule``."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class CuedNameRecognizer(EntityRecognizer):
        """PERSON spans where the PERSON rule's cue, gap and pattern hold (person_names)."""

        def __init__(self, person_rule: EntityRule) -> None:
            self.rule = person_rule
            super().__init__(
                supported_entities=["PERSON"],
                name=RECOGNIZER_NAME,
                supported_language="en",
                version=PERSON_NAMES_VERSION,
            )

        def load(self) -> None:
            # The name lists load on the first text with a cue, not at engine construction.
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            if entities and "PERSON" not in entities:
                return []
            return [
                RecognizerResult(
                    "PERSON",
                    start,
                    end,
                    SCORE,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        "person_names_version": PERSON_NAMES_VERSION,
                    },
                )
                for start, end in cued_name_spans(text, self.rule)
            ]

    return CuedNameRecognizer(rule)
