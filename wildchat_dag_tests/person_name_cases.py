"""A labelled set for the cue-anchored PERSON recognizer
(``wildchat_dag.defs.pii_detection.person_names``).

Positives are generated: full names of several origins x every cue of the PERSON rule x gaps
x positions in the text x what follows the name, each with its exact span. Hand-written
positives cover the edges (honorifics, possessives, apostrophes, capitals, several names).
Decoys are texts in which the PERSON rule redacts nothing: a cue followed by Title Case that
names nobody, quoted titles, one capitalized word, lowercase names, a cue that is the tail of
another word, a gap longer than the rule's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from wildchat_dag.defs.anonymization.redaction_rules import EntityRule

# Full names, given name first except where the origin writes the surname first (Chinese).
NAMES_BY_ORIGIN: dict[str, tuple[str, ...]] = {
    "english": (
        "John Smith",
        "Emily Clarke",
        "Oliver Bennett",
        "Sarah Thompson",
        "Mary Ann Walsh",
        "Ronald McDonald",
    ),
    "spanish": (
        "José García",
        "Carlos Hernández",
        "Lucía Fernández",
        "Alejandro Ruiz",
        "Nadia Vasquez",
        "Mateo Ortega",
    ),
    "west_african": (
        "Nadia Osei",
        "Kwame Mensah",
        "Ama Owusu",
        "Chukwuemeka Okafor",
        "Ngozi Adeyemi",
        "Oluwaseun Adebayo",
        "Aminata Diallo",
        "Mateo Mbeki",
    ),
    "slavic": (
        "Zoë Łukasiewicz",
        "Wojciech Kowalczyk",
        "Małgorzata Wiśniewska",
        "Jiří Dvořák",
        "Dragana Jovanović",
        "Ivan Petrov",
        "Olga Kuznetsova",
    ),
    "chinese_pinyin": ("Li Wei", "Wang Fang", "Zhang Xiuying", "Liu Yang", "Chen Jing"),
    "indian": (
        "Priya Natarajan",
        "Arjun Sharma",
        "Ananya Iyer",
        "Rohan Mehta",
        "Lakshmi Venkatesan",
    ),
    "arabic": (
        "Omar Haddad",
        "Fatima Rahman",
        "Youssef Mansour",
        "Layla Khoury",
        "Ahmed Abdelrahman",
        "Aisha Siddiqui",
        "Khalid Nasser",
    ),
}
ALL_NAMES: tuple[str, ...] = tuple(itertools.chain.from_iterable(NAMES_BY_ORIGIN.values()))

GAPS = (", ", ":\n", "\n", " ")
# What follows the name: punctuation, a line break, Chinese text (a letter, but not of a Latin
# word), or nothing at the end of the text.
FOLLOWERS = (",", ".", "!", "\n", "你好")
BEFORE = "See the notes below. "
AFTER = " The draft looks fine to me."


@dataclass(frozen=True)
class Case:
    text: str
    spans: tuple[tuple[int, int], ...]  # expected, sorted
    kind: str

    def expected_texts(self) -> list[str]:
        return [self.text[s:e] for s, e in self.spans]


def _cue_text(cue: str, variant: int) -> str:
    """The cue as people write it: capitalized, and now and then in lower or upper case."""
    if variant % 7 == 3:
        return cue.upper()
    if variant % 5 == 4:
        return cue
    return cue[:1].upper() + cue[1:]


def _case(prefix: str, name: str, suffix: str, kind: str) -> Case:
    start = len(prefix)
    return Case(prefix + name + suffix, ((start, start + len(name)),), kind)


def generated_positives(rule: EntityRule) -> list[Case]:
    """Every cue x gap x position x follower, the names taken in turn."""
    names = itertools.cycle(ALL_NAMES)
    cases = []
    combos = itertools.product(rule.cues_before, GAPS, ("start", "middle", "end"), FOLLOWERS)
    for variant, (cue, gap, position, follower) in enumerate(combos):
        name = next(names)
        lead = _cue_text(cue, variant) + gap
        if position == "start":
            cases.append(_case(lead, name, follower + AFTER, f"start:{cue}"))
        elif position == "middle":
            cases.append(_case(BEFORE + lead, name, follower + AFTER, f"middle:{cue}"))
        else:
            cases.append(_case(BEFORE.strip() + "\n" + lead, name, follower, f"end:{cue}"))
    return cases


def cjk_preceded_positives(rule: EntityRule) -> list[Case]:
    """A cue right after Chinese text, with no space: it still starts a word."""
    names = itertools.cycle(ALL_NAMES[::-1])
    return [
        _case("好的" + _cue_text(cue, 0) + " ", next(names), "。", f"cjk:{cue}")
        for cue in rule.cues_before
    ]


def _spans(text: str, *names: str) -> Case:
    spans = []
    position = 0
    for name in names:
        start = text.index(name, position)
        spans.append((start, start + len(name)))
        position = start + len(name)
    return Case(text, tuple(spans), "edge")


EDGE_POSITIVES: tuple[Case, ...] = (
    _spans("Hello Nadia Osei, thanks for the update.", "Nadia Osei"),
    _spans("Name: Nadia Vasquez.", "Nadia Vasquez"),
    _spans("Thanks,\nMateo Mbeki", "Mateo Mbeki"),
    _spans("Dear Dr Nadia Osei,\nplease see below.", "Dr Nadia Osei"),
    _spans("Dear Mr Kowalczyk, thank you.", "Mr Kowalczyk"),
    # The apostrophe is punctuation: the run stops before the glued "O".
    _spans("Hi Mary Ann O'Brien, welcome.", "Mary Ann"),
    _spans("I am John Smith's assistant.", "John Smith"),
    # Title Case after the name is trimmed off.
    _spans("Hi Nadia Osei Please find the file attached.", "Nadia Osei"),
    _spans("Regards,\nJohn Smith CEO", "John Smith"),
    # "Hi" is followed by "Dear" (not a name); "Dear" is a cue too.
    _spans("Hi Dear Mateo Mbeki, long time.", "Mateo Mbeki"),
    _spans("Name:\tLi\tWei", "Li\tWei"),
    _spans("HELLO NADIA OSEI!", "NADIA OSEI"),
    _spans("Hi John F Kennedy, sir.", "John F Kennedy"),
    _spans("Hi Will Smith, big fan.", "Will Smith"),
    _spans("my name is Nadia Osei and I am Mateo Mbeki.", "Nadia Osei", "Mateo Mbeki"),
    _spans("Hello, I am Priya Natarajan from Chennai.", "Priya Natarajan"),
    _spans("Best regards,\nAisha Siddiqui\nSenior Analyst", "Aisha Siddiqui"),
    _spans("Kind regards, Jiří Dvořák", "Jiří Dvořák"),
    _spans("Sincerely,\n\nOlga Kuznetsova", "Olga Kuznetsova"),
    _spans("thank you, Wang Fang!", "Wang Fang"),
    _spans("Regards,\tKwame Mensah", "Kwame Mensah"),
)

DECOYS: tuple[str, ...] = (
    # Quoted titles: the quote stands between the cue's gap and the words.
    'Hi "Gone With The Wind" is my favourite.',
    "This is “The Great Gatsby” again.",
    "Dear «Les Misérables» fans",
    "Hello ‘Pride And Prejudice’ readers",
    "I'm 'Nadia Osei' on the forum.",
    # Titles of works, unquoted.
    "This is The Great Gatsby",
    "This is Gone With The Wind",
    "This is Pride And Prejudice",
    "This is Star Wars",
    "This is Game Of Thrones",
    "This is Breaking Bad",
    "This is Amazing Grace",
    # Job titles and groups.
    "Dear Hiring Manager,",
    "Dear Project Manager,",
    "Hi Team Lead",
    "Hi Team Members",
    "Dear Customer Service,",
    "Dear Admissions Committee,",
    "Hi Support Team",
    "Dear Sir Or Madam,",
    "Dear Sir Madam",
    "Dear Valued Customer",
    "Hello Product Owner",
    "Hi Mr President",
    "Dear Madam President",
    "Dear Editor In Chief",
    "Regards, Sales Department",
    "Warm regards, Your Team",
    # A cue followed by a sentence in Title Case.
    "Hi All Please Find Attached The Report",
    "Hi Guys Welcome Back To My Channel",
    "Hello Everyone Good Morning",
    "Hi There How Are You",
    "Hi Long Time No See",
    "Thanks, Best Wishes",
    "Thanks, Good Luck",
    "Thank you, Best Regards",
    "Cheers, See You Soon",
    "Regards, The Management",
    "Sincerely, Your Friend",
    "Regards, Customer Support Team",
    "Thank you, Have A Nice Day",
    "Signed, Board Of Directors",
    "I am Very Happy",
    "I am So Sorry",
    "I am Not Sure",
    "I am Happy Now",
    "I am Fine Thank You",
    "I am Going Home",
    "I am The One",
    "I'm Super Excited",
    "This is Not Good",
    "This is Really Important",
    "This is Good News",
    "my name's Not Important",
    "Name: Full Name",
    "Name: First Last",
    # Public phrases, places, products.
    "Hello World",
    "Hello Kitty",
    "Hi ChatGPT",
    "Hello ChatGPT Plus User",
    "Dear ChatGPT Please Help Me",
    "Hi ChatGPT Team",
    "Hello OpenAI Support",
    "Dear YouTube Creators",
    "Hey Siri",
    "Hi Google Assistant",
    "This is Microsoft Word",
    "This is New York City",
    "This is Los Angeles",
    "This is San Francisco",
    "This is Big Data",
    "This is Harvard University",
    "This is Real Madrid",
    "I am Iron Man",
    "I am Chinese American",
    "Hi Doctor Who",
    "Hi HR Team",
    "Dear IT Department",
    "Hello CEO John",
    # One capitalized word: the rule needs two.
    "Hi John,",
    "Dear Nadia.",
    "Thanks,\nMateo",
    "I am Priya!",
    "Hey Everyone",
    "Hi Dear Friend",
    # Not capitalized.
    "my name is john smith",
    "hi nadia osei",
    "dear mateo mbeki,",
    # The cue is the tail of another word, or the gap is longer than the rule allows.
    "Mochi Nadia Osei",
    "Delhi Nadia Osei",
    "Hi    Nadia Osei",
    "Hi,,, Nadia Osei",
    # A line break, a digit or a hyphen inside.
    "Hi Nadia\nOsei",
    "Hi Agent007 Smith",
    "Hi Jean-Pierre, bonjour",
)
