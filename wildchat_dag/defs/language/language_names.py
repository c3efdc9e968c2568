"""fastText lid.176 labels to WildChat's language names.

WildChat labels languages with English names in the style of the lingua language detector
(``"English"``, ``"Chinese"``, ``"Bokmal"``, ``"Slovene"``, ``"Tagalog"``), and ``"Nolang"`` where
there is none. Every language WildChat can name keeps that name here, including the fastText
labels that are regional forms of it (Egyptian Arabic is ``"Arabic"``, Cantonese and Wu are
``"Chinese"``, Norwegian is ``"Bokmal"``). The other labels get their ISO 639 English name;
``language_code`` keeps fastText's own label either way.
"""

from __future__ import annotations

NOLANG = "Nolang"

# The languages WildChat can name (lingua's 75); only these may be values of WILDCHAT_NAMES.
WILDCHAT_LANGUAGES = frozenset(
    {
        "Afrikaans", "Albanian", "Arabic", "Armenian", "Azerbaijani", "Basque", "Belarusian",
        "Bengali", "Bokmal", "Bosnian", "Bulgarian", "Catalan", "Chinese", "Croatian", "Czech",
        "Danish", "Dutch", "English", "Esperanto", "Estonian", "Finnish", "French", "Ganda",
        "Georgian", "German", "Greek", "Gujarati", "Hebrew", "Hindi", "Hungarian", "Icelandic",
        "Indonesian", "Irish", "Italian", "Japanese", "Kazakh", "Korean", "Latin", "Latvian",
        "Lithuanian", "Macedonian", "Malay", "Maori", "Marathi", "Mongolian", "Nynorsk",
        "Persian", "Polish", "Portuguese", "Punjabi", "Romanian", "Russian", "Serbian", "Shona",
        "Slovak", "Slovene", "Somali", "Sotho", "Spanish", "Swahili", "Swedish", "Tagalog",
        "Tamil", "Telugu", "Thai", "Tsonga", "Tswana", "Turkish", "Ukrainian", "Urdu",
        "Vietnamese", "Welsh", "Xhosa", "Yoruba", "Zulu",
    }
)  # fmt: skip

# fastText labels whose language WildChat names.
WILDCHAT_NAMES: dict[str, str] = {
    "af": "Afrikaans", "ar": "Arabic", "arz": "Arabic", "az": "Azerbaijani",
    "azb": "Azerbaijani", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali",
    "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "ga": "Irish", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic",
    "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh", "ko": "Korean",
    "la": "Latin", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "nl": "Dutch", "nn": "Nynorsk", "no": "Bokmal",
    "pa": "Punjabi", "pl": "Polish", "pnb": "Punjabi", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovene", "so": "Somali", "sq": "Albanian",
    "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu",
    "vi": "Vietnamese", "wuu": "Chinese", "yo": "Yoruba", "yue": "Chinese", "zh": "Chinese",
}  # fmt: skip

# The other fastText labels: ISO 639 English names (fastText's label for Alemannic is "als").
OTHER_NAMES: dict[str, str] = {
    "als": "Alemannic", "am": "Amharic", "an": "Aragonese", "as": "Assamese",
    "ast": "Asturian", "av": "Avaric", "ba": "Bashkir", "bar": "Bavarian",
    "bcl": "Central Bikol", "bh": "Bihari", "bo": "Tibetan", "bpy": "Bishnupriya",
    "br": "Breton", "bxr": "Buriat", "cbk": "Chavacano", "ce": "Chechen", "ceb": "Cebuano",
    "ckb": "Central Kurdish", "co": "Corsican", "cv": "Chuvash", "diq": "Zazaki",
    "dsb": "Lower Sorbian", "dty": "Dotyali", "dv": "Dhivehi", "eml": "Emilian-Romagnol",
    "frr": "Northern Frisian", "fy": "Western Frisian", "gd": "Scottish Gaelic",
    "gl": "Galician", "gn": "Guarani", "gom": "Goan Konkani", "gv": "Manx",
    "hif": "Fiji Hindi", "hsb": "Upper Sorbian", "ht": "Haitian Creole", "ia": "Interlingua",
    "ie": "Interlingue", "ilo": "Iloko", "io": "Ido", "jbo": "Lojban", "jv": "Javanese",
    "km": "Khmer", "kn": "Kannada", "krc": "Karachay-Balkar", "ku": "Kurdish", "kv": "Komi",
    "kw": "Cornish", "ky": "Kyrgyz", "lb": "Luxembourgish", "lez": "Lezghian",
    "li": "Limburgish", "lmo": "Lombard", "lo": "Lao", "lrc": "Northern Luri",
    "mai": "Maithili", "mg": "Malagasy", "mhr": "Eastern Mari", "min": "Minangkabau",
    "ml": "Malayalam", "mrj": "Western Mari", "mt": "Maltese", "mwl": "Mirandese",
    "my": "Burmese", "myv": "Erzya", "mzn": "Mazanderani", "nah": "Nahuatl",
    "nap": "Neapolitan", "nds": "Low German", "ne": "Nepali", "new": "Newari", "oc": "Occitan",
    "or": "Odia", "os": "Ossetian", "pam": "Pampanga", "pfl": "Palatine German",
    "pms": "Piedmontese", "ps": "Pashto", "qu": "Quechua", "rm": "Romansh", "rue": "Rusyn",
    "sa": "Sanskrit", "sah": "Yakut", "sc": "Sardinian", "scn": "Sicilian", "sco": "Scots",
    "sd": "Sindhi", "sh": "Serbo-Croatian", "si": "Sinhala", "su": "Sundanese", "tg": "Tajik",
    "tk": "Turkmen", "tt": "Tatar", "tyv": "Tuvinian", "ug": "Uyghur", "uz": "Uzbek",
    "vec": "Venetian", "vep": "Veps", "vls": "West Flemish", "vo": "Volapuk", "wa": "Walloon",
    "war": "Waray", "xal": "Kalmyk", "xmf": "Mingrelian", "yi": "Yiddish",
}  # fmt: skip

LANGUAGE_NAMES: dict[str, str] = {**WILDCHAT_NAMES, **OTHER_NAMES}
