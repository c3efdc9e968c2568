"""Built-in vocabulary for the synthetic logs: phrase banks, browser fingerprints, PII snippets.

Everything here is static data plus small pure functions that draw from a caller-supplied
``random.Random``, so the generator stays deterministic and needs no downloads.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class LanguageBank:
    """Phrases for one language; ``{topic}`` and ``{n}`` are the only template slots."""

    code: str
    accept_languages: tuple[str, ...]
    user: tuple[str, ...]
    assistant: tuple[str, ...]
    topics: tuple[str, ...]
    greeting: str
    # CJK text has no spaces between sentences.
    joiner: str = " "


BANKS: dict[str, LanguageBank] = {
    "en": LanguageBank(
        code="en",
        accept_languages=(
            "en-US,en;q=0.9",
            "en-US,en;q=0.9",
            "en-US,en;q=0.5",
            "en-GB,en;q=0.9",
            "en-GB,en-US;q=0.9,en;q=0.8",
            "en-IN,en;q=0.9,hi;q=0.8",
            "en-CA,en;q=0.9,fr-CA;q=0.8",
            "en-AU,en;q=0.9",
            "en-US",
        ),
        user=(
            "Can you explain {topic} in simple terms?",
            "Write a short story about {topic}.",
            "Give me {n} ideas for a blog post about {topic}.",
            "What are the pros and cons of {topic}?",
            "Please rewrite this paragraph to sound more professional.",
            "Summarize the main points of {topic} in {n} bullet points.",
            "I need help with my homework on {topic}.",
            "How do I fix a Python error that says 'list index out of range'?",
            "Write a SQL query that returns the top {n} customers by revenue.",
            "Make it shorter and funnier.",
            "Continue the story.",
            "Act as a travel agent and plan a {n}-day trip to Lisbon.",
            "Write a cover letter for a junior data analyst position.",
            "Explain it like I'm five.",
            "Generate a list of {n} names for a coffee shop.",
            "Why does my code print None?\n```python\ndef f(x):\n    print(x * 2)\n\n"
            "print(f({n}))\n```",
            'Translate "good morning, how are you?" into {n} different languages.',
            "Write a haiku about {topic} 😊",
            "Is {topic} really as important as people say?",
            "Create a {n}-week study plan for learning about {topic}.",
        ),
        assistant=(
            "Sure! Here is a clear explanation.",
            "Great question.",
            "In short, {topic} is about how small changes add up to large effects over time.",
            "First, it helps to understand the basic concepts.",
            "Second, there are several practical examples worth looking at.",
            "Here are {n} points to consider:\n1. Start with the fundamentals.\n2. Practice "
            "regularly.\n3. Review what you have learned.",
            "Many experts agree that {topic} will keep evolving over the next decade.",
            "However, it is important to keep the limitations in mind.",
            "Overall, the answer depends on your goals and context.",
            "I hope this helps! Let me know if you would like more details.",
            "Once upon a time, in a small village by the sea, there lived a curious inventor.",
            "```python\nfor i in range({n}):\n    print(i)\n```",
            "As an AI language model, I do not have personal opinions, but I can share facts.",
            "Feel free to ask if you have any other questions.",
        ),
        topics=(
            "quantum computing",
            "climate change",
            "the French Revolution",
            "machine learning",
            "photosynthesis",
            "the stock market",
            "black holes",
            "renewable energy",
            "a lonely robot",
            "a dragon who loves pizza",
            "remote work",
            "the Roman Empire",
            "blockchain",
            "healthy breakfast recipes",
            "time management",
            "the water cycle",
            "electric cars",
            "social media",
        ),
        greeting="Hello! How can I assist you today?",
    ),
    "zh": LanguageBank(
        code="zh",
        accept_languages=(
            "zh-CN,zh;q=0.9",
            "zh-CN,zh;q=0.9,en;q=0.8",
            "zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7",
            "zh-CN,zh;q=0.9,en;q=0.8,en-GB;q=0.7,en-US;q=0.6",
        ),
        user=(
            "你能用简单的话解释一下{topic}吗？",
            "请写一篇关于{topic}的短文。",
            "给我{n}个关于{topic}的建议。",
            "帮我把这段话翻译成英文。",
            "{topic}有哪些优点和缺点？",
            "请用{n}句话总结{topic}。",
            "我在写论文，题目和{topic}有关，应该怎么开头？",
            "继续写下去。",
            "能不能再详细一点？",
        ),
        assistant=(
            "当然可以，下面是详细的解释。",
            "简单来说，{topic}是一个正在快速发展的领域。",
            "首先，我们需要了解它的基本概念。",
            "其次，它在日常生活中有很多实际应用。",
            "最后，希望这些信息对你有所帮助。",
            "如果你还有其他问题，请随时告诉我。",
            "这是一个很好的问题。",
            "总的来说，{topic}既有机遇也有挑战。",
        ),
        topics=("人工智能", "气候变化", "量子计算", "中国历史", "健康饮食", "区块链", "时间管理"),
        greeting="你好！有什么我可以帮你的吗？",
        joiner="",
    ),
    "ru": LanguageBank(
        code="ru",
        accept_languages=("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru,en;q=0.9", "ru-RU,ru;q=0.9"),
        user=(
            "Расскажи подробнее про тему «{topic}».",
            "Напиши эссе на тему «{topic}».",
            "Составь план из {n} пунктов на тему «{topic}».",
            "Переведи этот текст на английский язык.",
            "Помоги мне исправить ошибку в коде на Python.",
            "Продолжай.",
            "Сделай текст короче и проще.",
            "Что ты думаешь об этом?",
        ),
        assistant=(
            "Конечно, вот подробный ответ.",
            "Это хороший вопрос.",
            "Прежде всего, важно понять основные понятия.",
            "Во-вторых, стоит обратить внимание на практические примеры.",
            "Тема «{topic}» сейчас активно обсуждается.",
            "Надеюсь, это поможет вам.",
            "Если у вас есть ещё вопросы, пишите.",
        ),
        topics=(
            "искусственный интеллект",
            "изменение климата",
            "история России",
            "квантовые компьютеры",
            "здоровое питание",
            "криптовалюта",
        ),
        greeting="Здравствуйте! Чем я могу вам помочь?",
    ),
    "fr": LanguageBank(
        code="fr",
        accept_languages=(
            "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
            "fr-FR,fr;q=0.9",
            "fr-CA,fr;q=0.9",
        ),
        user=(
            "Peux-tu m'expliquer {topic} simplement ?",
            "Écris une courte histoire sur {topic}.",
            "Donne-moi {n} idées d'articles sur {topic}.",
            "Fais un résumé en {n} points sur {topic}.",
            "Corrige les fautes dans ce texte, s'il te plaît.",
            "Traduis ce paragraphe en anglais.",
            "Continue l'histoire.",
            "Peux-tu développer un peu plus ?",
        ),
        assistant=(
            "Bien sûr, voici une explication détaillée.",
            "C'est une excellente question.",
            "Tout d'abord, il faut comprendre les notions de base.",
            "Ensuite, examinons quelques exemples concrets.",
            "En résumé, le sujet est plus complexe qu'il n'y paraît.",
            "J'espère que cela vous aidera.",
            "N'hésitez pas si vous avez d'autres questions.",
        ),
        topics=(
            "le changement climatique",
            "l'intelligence artificielle",
            "la Révolution française",
            "les énergies renouvelables",
            "le télétravail",
            "la photosynthèse",
        ),
        greeting="Bonjour ! Comment puis-je vous aider aujourd'hui ?",
    ),
    "es": LanguageBank(
        code="es",
        accept_languages=("es-ES,es;q=0.9", "es-MX,es;q=0.9,en;q=0.8", "es-419,es;q=0.9"),
        user=(
            "¿Puedes explicarme {topic} de forma sencilla?",
            "Escribe un cuento corto sobre {topic}.",
            "Dame {n} ideas para un artículo sobre {topic}.",
            "Haz un resumen en {n} puntos sobre {topic}.",
            "Corrige la gramática de este texto, por favor.",
            "Tradúcelo al inglés.",
            "Sigue con la historia.",
            "¿Puedes darme más detalles?",
        ),
        assistant=(
            "¡Claro! Aquí tienes una explicación detallada.",
            "Es una muy buena pregunta.",
            "En primer lugar, conviene entender los conceptos básicos.",
            "Además, hay varios ejemplos prácticos que lo ilustran.",
            "En resumen, se trata de un tema con muchas aplicaciones.",
            "Espero que esto te sea útil.",
            "Si tienes más preguntas, no dudes en preguntar.",
        ),
        topics=(
            "el cambio climático",
            "la inteligencia artificial",
            "la economía circular",
            "la historia de México",
            "las energías renovables",
            "el aprendizaje automático",
        ),
        greeting="¡Hola! ¿En qué puedo ayudarte hoy?",
    ),
    "pt": LanguageBank(
        code="pt",
        accept_languages=("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt-PT,pt;q=0.9", "pt-BR"),
        user=(
            "Você pode explicar {topic} de forma simples?",
            "Escreva uma história curta sobre {topic}.",
            "Me dê {n} ideias de posts sobre {topic}.",
            "Faça um resumo em {n} tópicos sobre {topic}.",
            "Corrija os erros deste texto, por favor.",
            "Traduza isso para o inglês.",
            "Continue a história.",
            "Pode explicar melhor?",
        ),
        assistant=(
            "Claro! Aqui está uma explicação detalhada.",
            "Ótima pergunta.",
            "Em primeiro lugar, é importante entender os conceitos básicos.",
            "Além disso, existem vários exemplos práticos.",
            "Em resumo, é um tema com muitas aplicações no dia a dia.",
            "Espero ter ajudado.",
            "Se tiver mais dúvidas, é só perguntar.",
        ),
        topics=(
            "a inteligência artificial",
            "as mudanças climáticas",
            "a história do Brasil",
            "a energia solar",
            "o mercado financeiro",
            "a alimentação saudável",
        ),
        greeting="Olá! Como posso ajudar você hoje?",
    ),
    "de": LanguageBank(
        code="de",
        accept_languages=(
            "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
            "de-DE,de;q=0.9",
            "de-AT,de;q=0.9",
        ),
        user=(
            "Kannst du mir {topic} einfach erklären?",
            "Schreib eine kurze Geschichte über {topic}.",
            "Gib mir {n} Ideen für einen Blogartikel über {topic}.",
            "Fasse die wichtigsten Punkte über {topic} in {n} Sätzen zusammen.",
            "Bitte korrigiere die Rechtschreibung in diesem Text.",
            "Übersetze das bitte ins Englische.",
            "Schreib weiter.",
            "Kannst du das ausführlicher erklären?",
        ),
        assistant=(
            "Natürlich, hier ist eine ausführliche Erklärung.",
            "Das ist eine gute Frage.",
            "Zunächst sollte man die Grundbegriffe verstehen.",
            "Außerdem gibt es einige praktische Beispiele.",
            "Zusammenfassend lässt sich sagen, dass das Thema viele Facetten hat.",
            "Ich hoffe, das hilft dir weiter.",
            "Wenn du weitere Fragen hast, melde dich gerne.",
        ),
        topics=(
            "den Klimawandel",
            "künstliche Intelligenz",
            "die Energiewende",
            "das Bruttoinlandsprodukt",
            "Quantencomputer",
            "die Weimarer Republik",
        ),
        greeting="Hallo! Wie kann ich dir heute helfen?",
    ),
    "ar": LanguageBank(
        code="ar",
        accept_languages=("ar-SA,ar;q=0.9,en-US;q=0.8,en;q=0.7", "ar-EG,ar;q=0.9", "ar,en;q=0.9"),
        user=(
            "هل يمكنك أن تشرح لي {topic} بطريقة بسيطة؟",
            "اكتب قصة قصيرة عن {topic}.",
            "أعطني {n} أفكار لمقال عن {topic}.",
            "لخص أهم النقاط عن {topic}.",
            "ترجم هذا النص إلى الإنجليزية من فضلك.",
            "أكمل القصة.",
            "هل يمكنك التوضيح أكثر؟",
        ),
        assistant=(
            "بالتأكيد، إليك شرحاً مفصلاً.",
            "هذا سؤال رائع.",
            "أولاً، من المهم فهم المفاهيم الأساسية.",
            "ثانياً، هناك العديد من الأمثلة العملية.",
            "باختصار، هذا موضوع مهم وله تطبيقات كثيرة.",
            "أتمنى أن يكون هذا مفيداً.",
            "إذا كان لديك أي سؤال آخر فلا تتردد.",
        ),
        topics=(
            "الذكاء الاصطناعي",
            "تغير المناخ",
            "الطاقة المتجددة",
            "تاريخ الأندلس",
            "التعلم الآلي",
            "الاقتصاد الرقمي",
        ),
        greeting="مرحباً! كيف يمكنني مساعدتك اليوم؟",
    ),
    "ja": LanguageBank(
        code="ja",
        accept_languages=(
            "ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7",
            "ja,en-US;q=0.9,en;q=0.8",
            "ja-JP",
        ),
        user=(
            "{topic}について簡単に説明してください。",
            "{topic}についての短い物語を書いてください。",
            "{topic}に関するブログ記事のアイデアを{n}つください。",
            "{topic}のメリットとデメリットは何ですか？",
            "この文章を英語に翻訳してください。",
            "続きを書いてください。",
            "もう少し詳しく教えてください。",
        ),
        assistant=(
            "もちろんです。詳しく説明します。",
            "とても良い質問ですね。",
            "まず、基本的な概念を理解することが大切です。",
            "次に、具体的な例を見てみましょう。",
            "まとめると、{topic}には多くの可能性があります。",
            "お役に立てれば幸いです。",
            "他にも質問があれば、お気軽にどうぞ。",
        ),
        topics=(
            "人工知能",
            "気候変動",
            "量子コンピュータ",
            "日本の歴史",
            "健康的な食事",
            "ブロックチェーン",
        ),
        greeting="こんにちは！今日はどのようなご用件でしょうか？",
        joiner="",
    ),
    "ko": LanguageBank(
        code="ko",
        accept_languages=("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko-KR,ko;q=0.9", "ko,en;q=0.9"),
        user=(
            "{topic}에 대해 쉽게 설명해 줄 수 있어?",
            "{topic}에 관한 짧은 이야기를 써 줘.",
            "{topic}에 대한 블로그 글 아이디어를 {n}개 알려 줘.",
            "{topic}의 장단점은 뭐야?",
            "이 문장을 영어로 번역해 줘.",
            "계속 써 줘.",
            "좀 더 자세히 설명해 줄래?",
        ),
        assistant=(
            "물론이죠. 자세히 설명해 드릴게요.",
            "좋은 질문입니다.",
            "먼저 기본 개념을 이해하는 것이 중요합니다.",
            "다음으로 실제 사례를 살펴보겠습니다.",
            "요약하자면, {topic}에는 많은 가능성이 있습니다.",
            "도움이 되었으면 좋겠습니다.",
            "다른 질문이 있으면 언제든지 물어보세요.",
        ),
        topics=("인공지능", "기후 변화", "양자 컴퓨터", "한국 역사", "건강한 식단", "블록체인"),
        greeting="안녕하세요! 무엇을 도와드릴까요?",
    ),
    "it": LanguageBank(
        code="it",
        accept_languages=("it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7", "it-IT,it;q=0.9", "it,en;q=0.9"),
        user=(
            "Puoi spiegarmi {topic} in modo semplice?",
            "Scrivi un breve racconto con questo tema: {topic}.",
            "Dammi {n} idee per un articolo sul tema: {topic}.",
            "Riassumi in {n} punti questo argomento: {topic}.",
            "Correggi gli errori in questo testo, per favore.",
            "Traducilo in inglese.",
            "Continua la storia.",
            "Puoi spiegarlo meglio?",
        ),
        assistant=(
            "Certo! Ecco una spiegazione dettagliata.",
            "Ottima domanda.",
            "Prima di tutto, è importante capire i concetti di base.",
            "Inoltre, ci sono diversi esempi pratici.",
            "In sintesi, è un argomento con molte applicazioni.",
            "Spero che questo ti sia utile.",
            "Se hai altre domande, chiedi pure.",
        ),
        topics=(
            "l'intelligenza artificiale",
            "il cambiamento climatico",
            "la storia di Roma",
            "le energie rinnovabili",
            "la dieta mediterranea",
            "il machine learning",
        ),
        greeting="Ciao! Come posso aiutarti oggi?",
    ),
    "tr": LanguageBank(
        code="tr",
        accept_languages=("tr-TR,tr;q=0.9,en-US;q=0.8,en;q=0.7", "tr-TR,tr;q=0.9", "tr,en;q=0.9"),
        user=(
            "Bana {topic} konusunu basitçe açıklar mısın?",
            "{topic} hakkında kısa bir hikaye yaz.",
            "{topic} hakkında {n} blog yazısı fikri ver.",
            "{topic} konusunun avantajları ve dezavantajları nelerdir?",
            "Bu metni İngilizceye çevir lütfen.",
            "Devam et.",
            "Biraz daha detaylı anlatır mısın?",
        ),
        assistant=(
            "Tabii ki, işte ayrıntılı bir açıklama.",
            "Çok güzel bir soru.",
            "Öncelikle temel kavramları anlamak önemlidir.",
            "Ayrıca birçok pratik örnek vardır.",
            "Özetle, bu konu birçok farklı alanda kullanılmaktadır.",
            "Umarım bu yardımcı olur.",
            "Başka sorularınız varsa çekinmeden sorun.",
        ),
        topics=(
            "yapay zeka",
            "iklim değişikliği",
            "Osmanlı tarihi",
            "yenilenebilir enerji",
            "kripto paralar",
            "sağlıklı beslenme",
        ),
        greeting="Merhaba! Bugün size nasıl yardımcı olabilirim?",
    ),
    "vi": LanguageBank(
        code="vi",
        accept_languages=("vi-VN,vi;q=0.9,en-US;q=0.8,en;q=0.7", "vi-VN,vi;q=0.9", "vi,en;q=0.9"),
        user=(
            "Bạn có thể giải thích {topic} một cách đơn giản không?",
            "Viết một câu chuyện ngắn về {topic}.",
            "Cho tôi {n} ý tưởng bài viết về {topic}.",
            "Ưu điểm và nhược điểm của {topic} là gì?",
            "Dịch đoạn văn này sang tiếng Anh giúp tôi.",
            "Viết tiếp đi.",
            "Bạn có thể nói chi tiết hơn không?",
        ),
        assistant=(
            "Tất nhiên, đây là lời giải thích chi tiết.",
            "Đây là một câu hỏi hay.",
            "Trước hết, cần hiểu các khái niệm cơ bản.",
            "Ngoài ra, có nhiều ví dụ thực tế.",
            "Tóm lại, đây là một chủ đề có nhiều ứng dụng.",
            "Hy vọng điều này hữu ích cho bạn.",
            "Nếu bạn có câu hỏi khác, cứ hỏi nhé.",
        ),
        topics=(
            "trí tuệ nhân tạo",
            "biến đổi khí hậu",
            "lịch sử Việt Nam",
            "năng lượng tái tạo",
            "học máy",
            "tiền điện tử",
        ),
        greeting="Xin chào! Tôi có thể giúp gì cho bạn hôm nay?",
    ),
}

# Relative weights of the non-English languages, roughly following WildChat's language mix.
OTHER_LANGUAGE_WEIGHTS: dict[str, float] = {
    "zh": 10.0,
    "ru": 9.0,
    "fr": 3.0,
    "es": 3.0,
    "pt": 3.0,
    "de": 2.5,
    "ar": 2.0,
    "ja": 1.5,
    "ko": 1.5,
    "it": 1.5,
    "tr": 1.5,
    "vi": 1.0,
}


# Templates that need str.format; a set lookup is cheaper than scanning each sentence for "{".
_SLOTTED = frozenset(
    sentence
    for bank in BANKS.values()
    for sentence in (*bank.user, *bank.assistant)
    if "{" in sentence
)


class TextMaker:
    """Builds user and assistant messages of a random length around a configured mean."""

    def __init__(self, rng: random.Random, mean_chars: int) -> None:
        if mean_chars < 1:
            raise ValueError(f"mean_message_chars must be >= 1, got {mean_chars}")
        self._rng = rng
        # Lognormal lengths give the long right tail real prompts and replies have; users
        # write shorter messages than the model, and the two together average mean_chars.
        self._sigma = 0.8
        self._user_mu = math.log(max(1.0, 0.5 * mean_chars)) - self._sigma**2 / 2
        self._assistant_mu = math.log(1.5 * mean_chars) - self._sigma**2 / 2
        self._max_chars = 20 * mean_chars

    def _compose(self, bank: LanguageBank, pool: tuple[str, ...], mu: float) -> str:
        # This is the generator's hot loop, hence random() indexing instead of rng.choice.
        rand = self._rng.random
        target = min(self._rng.lognormvariate(mu, self._sigma), self._max_chars)
        parts: list[str] = []
        total = 0
        size = len(pool)
        topics = bank.topics
        n_topics = len(topics)
        while True:
            sentence = pool[int(rand() * size)]
            if sentence in _SLOTTED:
                sentence = sentence.format(
                    topic=topics[int(rand() * n_topics)], n=2 + int(rand() * 11)
                )
            parts.append(sentence)
            total += len(sentence) + 1
            if total >= target:
                break
        return bank.joiner.join(parts)

    def user(self, lang: str) -> str:
        bank = BANKS[lang]
        return self._compose(bank, bank.user, self._user_mu)

    def assistant(self, lang: str) -> str:
        bank = BANKS[lang]
        return self._compose(bank, bank.assistant, self._assistant_mu)

    def assistant_for_empty(self, lang: str) -> str:
        """Reply to an empty prompt: models answer with a greeting, sometimes with more."""
        bank = BANKS[lang]
        if self._rng.random() < 0.5:
            return bank.greeting
        return bank.greeting + bank.joiner + self._compose(bank, bank.assistant, self._user_mu)


# --- Browser fingerprints -------------------------------------------------------------------

# Chrome major version -> build number, so that generated version strings look real.
_CHROME_BUILDS = {
    112: 5615,
    113: 5672,
    114: 5735,
    115: 5790,
    116: 5845,
    117: 5938,
    118: 5993,
    119: 6045,
    120: 6099,
    121: 6167,
}
_CHROME_MAJORS = tuple(_CHROME_BUILDS)
# Newer versions are more common, as in any snapshot of real traffic.
_CHROME_MAJOR_WEIGHTS = tuple(1.0 + i * 0.6 for i in range(len(_CHROME_MAJORS)))
_ANDROID_DEVICES = ("K", "SM-G991B", "SM-A515F", "Pixel 7", "Pixel 6a", "M2101K6G", "CPH2211")
_IOS_VERSIONS = ("16_6", "17_0", "17_1_2", "17_2_1", "17_3")
_MAC_VERSIONS = ("10_15_7", "14_2_1", "13_6_3")

_UA_KINDS = (
    "chrome_win",
    "chrome_mac",
    "chrome_linux",
    "chrome_android",
    "edge_win",
    "firefox_win",
    "firefox_linux",
    "firefox_mac",
    "safari_ios",
    "safari_mac",
)
_UA_KIND_WEIGHTS = (34.0, 9.0, 3.0, 16.0, 9.0, 6.0, 2.0, 1.5, 15.0, 4.5)


def _chrome_version(rng: random.Random) -> tuple[int, str]:
    major = rng.choices(_CHROME_MAJORS, weights=_CHROME_MAJOR_WEIGHTS)[0]
    # Few patch levels per major keeps popular exact strings shared by many users.
    return major, f"{major}.0.{_CHROME_BUILDS[major]}.{rng.randrange(0, 230)}"


def random_user_agent(rng: random.Random) -> str:
    kind = rng.choices(_UA_KINDS, weights=_UA_KIND_WEIGHTS)[0]
    if kind.startswith("chrome") or kind == "edge_win":
        major, version = _chrome_version(rng)
        webkit = "AppleWebKit/537.36 (KHTML, like Gecko)"
        if kind == "chrome_win":
            return (
                f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {webkit} Chrome/{version} Safari/537.36"
            )
        if kind == "chrome_mac":
            mac = rng.choice(_MAC_VERSIONS)
            return (
                f"Mozilla/5.0 (Macintosh; Intel Mac OS X {mac}) {webkit} "
                f"Chrome/{version} Safari/537.36"
            )
        if kind == "chrome_linux":
            return f"Mozilla/5.0 (X11; Linux x86_64) {webkit} Chrome/{version} Safari/537.36"
        if kind == "chrome_android":
            android = rng.choice(("10", "11", "12", "13", "14"))
            device = rng.choice(_ANDROID_DEVICES)
            return (
                f"Mozilla/5.0 (Linux; Android {android}; {device}) {webkit} "
                f"Chrome/{version} Mobile Safari/537.36"
            )
        edge = f"{major}.0.{rng.randrange(2000, 2400)}.{rng.randrange(0, 120)}"
        return (
            f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {webkit} Chrome/{major}.0.0.0 "
            f"Safari/537.36 Edg/{edge}"
        )
    if kind.startswith("firefox"):
        fx = rng.randrange(110, 123)
        platform = {
            "firefox_win": "Windows NT 10.0; Win64; x64",
            "firefox_linux": "X11; Ubuntu; Linux x86_64",
            "firefox_mac": "Macintosh; Intel Mac OS X 10.15",
        }[kind]
        return f"Mozilla/5.0 ({platform}; rv:{fx}.0) Gecko/20100101 Firefox/{fx}.0"
    safari = rng.choice(("16.6", "17.0", "17.1", "17.2", "17.2.1", "17.3"))
    if kind == "safari_ios":
        ios = rng.choice(_IOS_VERSIONS)
        device = rng.choice(("iPhone; CPU iPhone OS", "iPad; CPU OS"))
        return (
            f"Mozilla/5.0 ({device} {ios} like Mac OS X) AppleWebKit/605.1.15 "
            f"(KHTML, like Gecko) Version/{safari} Mobile/15E148 Safari/604.1"
        )
    mac = rng.choice(_MAC_VERSIONS)
    return (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X {mac}) AppleWebKit/605.1.15 "
        f"(KHTML, like Gecko) Version/{safari} Safari/605.1.15"
    )


def random_accept_language(rng: random.Random, lang: str) -> str:
    # Some people write in their own language from an English-configured browser.
    if lang != "en" and rng.random() < 0.15:
        return rng.choice(BANKS["en"].accept_languages)
    return rng.choice(BANKS[lang].accept_languages)


# --- PII-like snippets and celebrity mentions -----------------------------------------------

FIRST_NAMES = (
    "John",
    "Emily",
    "Michael",
    "Sarah",
    "David",
    "Jessica",
    "Daniel",
    "Laura",
    "James",
    "Olivia",
    "Wei",
    "Olga",
    "Carlos",
    "Fatima",
    "Hiroshi",
    "Giulia",
    "Mehmet",
    "Anh",
    "Lucas",
    "Sophie",
)
LAST_NAMES = (
    "Smith",
    "Clark",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "Rossi",
    "Wang",
    "Ivanova",
    "Nguyen",
    "Kim",
    "Tanaka",
    "Yilmaz",
    "Silva",
    "Dubois",
    "Schneider",
    "Martin",
    "Lopez",
)
_EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "qq.com", "mail.ru", "company.org")
_PLACEHOLDER_EMAILS = ("info@example.com", "john.doe@example.com", "user@example.org")

# Heavily skewed so the same few names recur across many unrelated conversations.
CELEBRITIES = (
    "Taylor Swift",
    "Elon Musk",
    "Cristiano Ronaldo",
    "Barack Obama",
    "Lionel Messi",
    "Kim Kardashian",
)
_CELEBRITY_WEIGHTS = (30.0, 30.0, 12.0, 10.0, 10.0, 8.0)
_CELEBRITY_TEMPLATES = (
    "Write a poem about {c}.",
    "What do you think about {c}?",
    "Write a fictional interview with {c}.",
    "Is it true that {c} said that?",
    "Write a funny tweet in the style of {c}.",
)

PII_KINDS = ("name", "email", "phone", "wechat", "card", "card_bare", "linkedin", "ipv4")
_PII_WEIGHTS = (22.0, 18.0, 14.0, 6.0, 8.0, 6.0, 10.0, 16.0)


def _luhn_card(rng: random.Random) -> str:
    # Luhn-valid so detectors that verify the checksum still fire.
    digits = [rng.choice((4, 5))] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


def _full_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def pii_snippet(rng: random.Random) -> tuple[str, str]:
    """Return ``(kind, text)`` for one PII-like string with the cue a real user would write."""
    kind = rng.choices(PII_KINDS, weights=_PII_WEIGHTS)[0]
    if kind == "name":
        first, last = _full_name(rng)
        template = rng.choice(
            (
                "My name is {f} {l}.",
                "Regards, {f} {l}",
                "Best regards,\n{f} {l}",
                "I am {f} {l} and I need help with my resume.",
                "Sincerely, {f} {l}",
            )
        )
        return kind, template.format(f=first, l=last)
    if kind == "email":
        if rng.random() < 0.2:
            email = rng.choice(_PLACEHOLDER_EMAILS)
        else:
            first, last = _full_name(rng)
            email = (
                f"{first.lower()}.{last.lower()}{rng.randrange(100)}@{rng.choice(_EMAIL_DOMAINS)}"
            )
        template = rng.choice(
            ("You can reach me at {e}.", "email: {e}", "Send the draft to {e} please.")
        )
        return kind, template.format(e=email)
    if kind == "phone":
        return kind, rng.choice(
            (
                f"phone: +1 {rng.randrange(201, 990)}-555-{rng.randrange(100, 200):04d}",
                f"Call me at (212) 555-{rng.randrange(100, 200):04d}.",
                f"Tel: +44 20 7946 {rng.randrange(0, 1000):04d}",
                f"my number is +49 30 {rng.randrange(1000000, 9999999)}",
                f"phone +7 (915) {rng.randrange(100, 999)}-{rng.randrange(10, 99)}-"
                f"{rng.randrange(10, 99)}",
            )
        )
    if kind == "wechat":
        number = f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"
        template = rng.choice(("WeChat {p}", "my WeChat is {p}", "微信：{p}", "手机号 {p}"))
        return kind, template.format(p=number)
    if kind == "card":
        card = _luhn_card(rng)
        if rng.random() < 0.5:
            card = " ".join(card[i : i + 4] for i in range(0, 16, 4))
        template = rng.choice(
            ("My card number is {c}.", "card: {c}", "Visa card {c} exp 04/27", "credit card {c}")
        )
        return kind, template.format(c=card)
    if kind == "card_bare":
        # 16 digits with no "card" cue, as in order references pasted into a prompt.
        template = rng.choice(("Ref: {c}", "The number is {c}.", "use {c} for the payment"))
        return kind, template.format(c=_luhn_card(rng))
    if kind == "linkedin":
        first, last = _full_name(rng)
        url = f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{rng.randrange(10, 999)}"
        return kind, rng.choice((f"Here is my profile: {url}", url, f"LinkedIn: {url}"))
    ip = rng.choice(
        (
            f"203.0.113.{rng.randrange(1, 255)}",
            f"192.168.{rng.randrange(0, 3)}.{rng.randrange(1, 255)}",
            f"{rng.randrange(11, 90)}.{rng.randrange(256)}.{rng.randrange(256)}."
            f"{rng.randrange(1, 255)}",
        )
    )
    template = rng.choice(
        ("My server IP is {ip}.", "ping {ip} times out", "nginx listens on {ip}:8080")
    )
    return kind, template.format(ip=ip)


def celebrity_snippet(rng: random.Random) -> str:
    name = rng.choices(CELEBRITIES, weights=_CELEBRITY_WEIGHTS)[0]
    return rng.choice(_CELEBRITY_TEMPLATES).format(c=name)
