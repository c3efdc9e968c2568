"""Credential detection: exact spans on realistic keys, silence on code, and a sound gate."""

from __future__ import annotations

import base64
import json
import random
import re
import string
import subprocess
import sys
from collections.abc import Callable

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wildchat_dag.defs.pii_detection.credentials import (
    _CUE_WORDS,
    FOREIGN_PASSWORD_CUES,
    SECRET_DETECTORS,
    SECRET_ENTITY,
    SECRET_GATE,
    SECRETS_VERSION,
    SecretMatch,
    _find,
    build_secret_recognizer,
    detector_of,
    find_secrets,
    secret_label,
)

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"
UPPER32 = string.ascii_uppercase + "234567"

RNG = random.Random(20240415)


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(alg: str = "HS256", signature_bytes: int = 32) -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": rand(12), "iat": RNG.randrange(10**9, 2 * 10**9)}).encode())
    return f"{header}.{payload}.{b64url(RNG.randbytes(signature_bytes))}"


def discord_bot_token() -> str:
    user_id = str(RNG.randrange(10**17, 2 * 10**18))
    return f"{b64url(user_id.encode())}.{rand(6, B64URL)}.{rand(38, B64URL)}"


def pem(label: str, lines: int = 20, escaped: bool = False, headers: str = "") -> str:
    nl = "\\n" if escaped else "\n"
    body = nl.join(rand(64, B64) for _ in range(lines)) + nl + rand(40, B64) + "=="
    return f"-----BEGIN {label}-----{nl}{headers}{body}{nl}-----END {label}-----"


# Realistic random keys, one generator per format (several per detector where formats differ).
KEYS: dict[str, list[Callable[[], str]]] = {
    "openai_api_key": [
        lambda: f"sk-{rand(20)}T3BlbkFJ{rand(20)}",
        lambda: f"sk-proj-{rand(74, B64URL)}T3BlbkFJ{rand(74, B64URL)}",
        lambda: f"sk-svcacct-{rand(70, B64URL)}T3BlbkFJ{rand(70, B64URL)}",
        lambda: f"sk-admin-{rand(70, B64URL)}T3BlbkFJ{rand(70, B64URL)}",
        lambda: f"sk-{rand(32, HEX)}",  # DeepSeek and other OpenAI-compatible services
    ],
    "anthropic_api_key": [
        lambda: f"sk-ant-api03-{rand(93, B64URL)}AA",
        lambda: f"sk-ant-admin01-{rand(93, B64URL)}AA",
    ],
    "aws_access_key_id": [lambda: f"AKIA{rand(16, UPPER32)}", lambda: f"ASIA{rand(16, UPPER32)}"],
    "github_token": [
        *(lambda p=p: f"{p}_{rand(36)}" for p in ("ghp", "gho", "ghu", "ghs", "ghr")),
        lambda: f"github_pat_11{rand(20, string.ascii_uppercase + string.digits)}_{rand(59)}",
    ],
    "gitlab_token": [lambda: f"glpat-{rand(20, B64URL)}"],
    "slack_token": [
        lambda: f"xoxb-{rand(12, string.digits)}-{rand(13, string.digits)}-{rand(24)}",
        lambda: (
            f"xoxp-{rand(12, string.digits)}-{rand(12, string.digits)}-"
            f"{rand(13, string.digits)}-{rand(32, HEX)}"
        ),
        lambda: f"xoxa-2-{rand(12, string.digits)}-{rand(32, HEX)}",
        lambda: f"xoxr-{rand(12, string.digits)}-{rand(40)}",
        lambda: f"xoxs-{rand(11, string.digits)}-{rand(12, string.digits)}-{rand(30, HEX)}",
    ],
    "slack_webhook": [
        lambda: (
            f"https://hooks.slack.com/services/T{rand(8, UPPER32)}/B{rand(10, UPPER32)}/{rand(24)}"
        )
    ],
    "discord_bot_token": [discord_bot_token],
    "discord_webhook": [
        lambda: f"https://discord.com/api/webhooks/{rand(18, string.digits)}/{rand(68, B64URL)}"
    ],
    "telegram_bot_token": [lambda: f"{RNG.randrange(10**8, 10**10)}:AA{rand(33, B64URL)}"],
    "stripe_key": [
        lambda: f"sk_live_51{rand(97)}",
        lambda: f"sk_test_{rand(24)}",
        lambda: f"rk_live_{rand(24)}",
        lambda: f"rk_test_51{rand(60)}",
        lambda: f"whsec_{rand(32)}",
    ],
    "google_api_key": [lambda: f"AIzaSy{rand(33, B64URL)}"],
    "google_oauth_client_secret": [lambda: f"GOCSPX-{rand(28, B64URL)}"],
    "huggingface_token": [lambda: f"hf_{rand(34, string.ascii_letters)}"],
    "groq_api_key": [lambda: f"gsk_{rand(52)}"],
    "replicate_api_token": [lambda: f"r8_{rand(37)}"],
    "xai_api_key": [lambda: f"xai-{rand(80)}"],
    "perplexity_api_key": [lambda: f"pplx-{rand(48)}"],
    "npm_token": [lambda: f"npm_{rand(36)}"],
    "sendgrid_api_key": [lambda: f"SG.{rand(22, B64URL)}.{rand(43, B64URL)}"],
    "jwt": [make_jwt, lambda: make_jwt("RS256", 256)],
}

# Where a key turns up: prose, code, JSON, curl, CJK without spaces, edges, quotes, punctuation.
CONTEXTS = (
    "{s}",
    "My key is {s}, can you check why it fails?",
    "{s} is what the dashboard shows",
    "it stopped working: {s}",
    "client = Client(api_key='{s}')\nprint(client.models.list())",
    'const token = "{s}";',
    '{{"credentials": {{"value": "{s}", "region": "us-east-1"}}}}',
    "curl https://api.example.com/v1/chat -H 'Authorization: Bearer {s}' -d '{{}}'",
    "密钥{s}谢谢",
    "我的key是「{s}」。",
    "key=`{s}`.",
    "({s})",
    "[{s}]!",
    "export SERVICE_CREDENTIAL={s}\nnpm start",
    "<value>{s}</value>",
    "value: {s}\n",
    "Here:\n\n{s}\n\nThanks!",
    "requests.get('https://api.example.com/v1/run?key={s}&q=1')",
)


def only(text: str, span: str, detector: str) -> list[SecretMatch]:
    start = text.index(span)
    return [SecretMatch(start, start + len(span), detector)]


def positive_key_cases() -> list[tuple[str, str, str]]:
    cases = []
    for detector, generators in KEYS.items():
        for generate in generators:
            for context in CONTEXTS:
                key = generate()
                cases.append((context.format(s=key), key, detector))
    return cases


KEY_CASES = positive_key_cases()


@pytest.mark.parametrize(("text", "key", "detector"), KEY_CASES)
def test_prefixed_keys_exact_spans(text: str, key: str, detector: str) -> None:
    assert find_secrets(text) == only(text, key, detector)


# (text, the exact secret inside it, detector) for detectors that need context.
def context_cases() -> list[tuple[str, str, str]]:
    aws_secret = rand(20, B64) + "/" + rand(19, B64)
    rsa = pem("RSA PRIVATE KEY")
    jwt = make_jwt()
    cases = [
        # AWS secret access keys: only next to a cue or right after a key id.
        (f"aws_secret_access_key = {aws_secret}\n", aws_secret, "aws_secret_access_key"),
        (f'AWS_SECRET_ACCESS_KEY="{aws_secret}"', aws_secret, "aws_secret_access_key"),
        (f'{{"SecretAccessKey": "{aws_secret}"}}', aws_secret, "aws_secret_access_key"),
        (f"Secret access key: {aws_secret}", aws_secret, "aws_secret_access_key"),
        (f"aws --aws-secret-access-key {aws_secret} s3 ls", aws_secret, "aws_secret_access_key"),
        (f"secretAccessKey: '{aws_secret}',", aws_secret, "aws_secret_access_key"),
        # Private keys: whole PEM blocks, escaped in JSON, and a BEGIN without END.
        (f"My key:\n{rsa}\nwhat now?", rsa, "private_key"),
        *(
            (f"```\n{k}\n```", k, "private_key")
            for k in (
                pem("PRIVATE KEY"),
                pem("EC PRIVATE KEY", 3),
                pem("OPENSSH PRIVATE KEY", 10),
                pem("ENCRYPTED PRIVATE KEY"),
                pem("DSA PRIVATE KEY"),
                pem(
                    "RSA PRIVATE KEY",
                    headers=f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{rand(32, HEX)}\n\n",
                ),
                pem("PGP PRIVATE KEY BLOCK", headers="Version: GnuPG v2\n\n"),
            )
        ),
    ]
    escaped = pem("PRIVATE KEY", escaped=True)
    cases.append(
        (
            f'{{"type": "service_account", "private_key": "{escaped}\\n", "client_email": "x"}}',
            escaped,
            "private_key",
        )
    )
    truncated_body = "\n".join(rand(64, B64) for _ in range(6))
    truncated = f"-----BEGIN RSA PRIVATE KEY-----\n{truncated_body}"
    cases.append((f"{truncated}\n\n(the rest got cut off)", truncated, "private_key"))
    escaped_truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\\n" + "\\n".join(
        rand(70, B64) for _ in range(5)
    )
    cases.append((f'key = "{escaped_truncated}', escaped_truncated, "private_key"))
    cases.append((f"密钥如下{rsa}谢谢", rsa, "private_key"))
    # JWTs: a sentence's full stop is not part of the signature.
    cases += [
        (f"my session token is {jwt}.", jwt, "jwt"),
        (f"https://example.com/reset/{jwt}", jwt, "jwt"),
        (f"document.cookie = 'session={jwt}; path=/'", jwt, "jwt"),
    ]
    # URL passwords: only the password, whatever the scheme.
    for url, password in [
        ("postgres://app_user:{p}@db.internal:5432/app", "Xk29qLm7vRt"),
        ("postgresql+psycopg2://admin:{p}@10.0.0.5/prod", "mN4!qz8Lpw"),
        ("mysql://root:{p}@localhost:3306/shop", "r00tPw-2023"),
        ("mongodb+srv://alice:{p}@cluster0.ab1cd.mongodb.net/?retryWrites=true", "Ghq72XpLs9"),
        ("redis://:{p}@cache.example.com:6379/0", "Jf83kq0Zm"),
        ("amqp://worker:{p}@rabbit:5672/vhost", "Tq7mZp3w"),
        ("https://bob:{p}@git.example.org/repo.git", "hJ7s!kq2"),
        ("mongodb://u:{p}@h1,h2/db", "p@ss-W0rd9"),
    ]:
        text = f'DATABASE_URL = "{url.format(p=password)}"'
        cases.append((text, password, "url_password"))
    cases.append(("连接串postgres://u1:Qz8m2kL9x@db/prod没问题", "Qz8m2kL9x", "url_password"))
    telegram = KEYS["telegram_bot_token"][0]()
    cases.append(
        (f"https://api.telegram.org/bot{telegram}/sendMessage", telegram, "telegram_bot_token")
    )
    # Password assignments: only the value.
    for text, password in [
        ('password = "hunter2secret"', "hunter2secret"),
        ("password = 'Summer2023!'", "Summer2023!"),
        ('"password": "Tr0ub4dor&3"', "Tr0ub4dor&3"),
        ("{'PASSWORD': 'Xy7#kP2q', 'HOST': 'db'}", "Xy7#kP2q"),
        ("PASSWORD=s3cr3tP4ss\n", "s3cr3tP4ss"),
        ("DB_PASSWORD=Lk29zQ!m\nDB_HOST=localhost", "Lk29zQ!m"),
        ("MYSQL_ROOT_PASSWORD: 8fj2Kq0z", "8fj2Kq0z"),
        ("passwd: abc123xyz", "abc123xyz"),
        ("pwd=Qw8!zz9", "Qw8!zz9"),
        ('String password = "J4v4Pass!";', "J4v4Pass!"),
        ('dbPassword: "m0ng0Pw_77",', "m0ng0Pw_77"),
        ('conn = psycopg2.connect(user="app", password="Pg-9913xk")', "Pg-9913xk"),
        ('password: str = "abc123!!"', "abc123!!"),
        ("  password: Zq81ma!x\n  username: deploy", "Zq81ma!x"),
        ("login: john@example.com password: Kq82!mm", "Kq82!mm"),
        ("mysqldump --password=Rt55!xqa db > dump.sql", "Rt55!xqa"),
        ("psql --password Zz9!kq2x", "Zz9!kq2x"),
        ("<password>Kq82!mm</password>", "Kq82!mm"),
        ('os.environ["DB_PASSWORD"] = "Hx72mq!w"', "Hx72mq!w"),
        ("jdbc:mysql://db:3306/app?user=app&password=Wm29qkx7&ssl=true", "Wm29qkx7"),
        ("密码：Wq8823kd谢谢", "Wq8823kd"),
        ("账号 admin 密码是 Pz73kq91", "Pz73kq91"),
        ("Пароль: Mk29!xzq", "Mk29!xzq"),
        ("my password is Zebra42!", "Zebra42!"),
        ('{\\"password\\": \\"Tr1cky9!\\"}', "Tr1cky9!"),
        ("smtp_pass = 'Mail2024#'", "Mail2024#"),
        ("new_password_confirmation: 'N3wPass!x'", "N3wPass!x"),
    ]:
        cases.append((text, password, "password_assignment"))
    # Secret assignments without a vendor prefix.
    hex_key, token = rand(32, HEX), rand(40)
    for text, secret in [
        (f'api_key = "{hex_key}"', hex_key),
        (f"OPENWEATHER_API_KEY={hex_key}\n", hex_key),
        (f"curl -H 'x-api-key: {token}' https://api.example.com", token),
        (f"My API key: {token}", token),
        (f'"client_secret": "{token}"', token),
        (f"ACCESS_TOKEN='{token}'", token),
        (f'private_key = "0x{rand(64, HEX)}"', None),
        (f'headers = {{"Ocp-Apim-Subscription-Key": "{hex_key}"}}', hex_key),
        (f"app.config['SECRET_KEY'] = '{token}'", token),
    ]:
        value = secret or text.split('"')[1]
        cases.append((text, value, "secret_assignment"))
    basic = base64.b64encode(b"alice:Zx93!aa7").decode()
    cases += [
        (f"Authorization: Basic {basic}", basic, "basic_auth"),
        (f"curl -H 'Authorization: Basic {basic}' https://x.example", basic, "basic_auth"),
        (f"Authorization: Bearer {token}", token, "bearer_token"),
        (f"Authorization: bearer {token}.", token, "bearer_token"),
    ]
    return cases


CONTEXT_CASES = context_cases()


@pytest.mark.parametrize(("text", "secret", "detector"), CONTEXT_CASES)
def test_context_detectors_exact_spans(text: str, secret: str, detector: str) -> None:
    assert find_secrets(text) == only(text, secret, detector)


def test_every_detector_has_positives() -> None:
    covered = {d for _, _, d in KEY_CASES} | {d for _, _, d in CONTEXT_CASES}
    assert covered == set(SECRET_DETECTORS)


def test_several_secrets_sorted_and_separate() -> None:
    RNG.seed("test_several_secrets_sorted_and_separate")
    openai, github = KEYS["openai_api_key"][1](), KEYS["github_token"][0]()
    aws_id, aws_secret = f"AKIA{rand(16, UPPER32)}", rand(40, B64)
    text = (
        f"OPENAI_API_KEY={openai}\nGITHUB_TOKEN={github}\n"
        f"aws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"
        f"postgres://app:Pq82mzx!@db/app"
    )
    found = find_secrets(text)
    assert [text[m.start : m.end] for m in found] == [
        openai,
        github,
        aws_id,
        aws_secret,
        "Pq82mzx!",
    ]
    assert [m.detector for m in found] == [
        "openai_api_key",
        "github_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "url_password",
    ]
    # A key id followed at once by its secret (a credentials CSV row).
    row = f"{aws_id},{aws_secret}"
    assert [m.detector for m in find_secrets(row)] == ["aws_access_key_id", "aws_secret_access_key"]


def test_more_specific_detector_wins_equal_spans() -> None:
    RNG.seed("test_more_specific_detector_wins_equal_spans")
    github = KEYS["github_token"][0]()
    text = f"https://x-access-token:{github}@github.com/org/repo.git"
    assert find_secrets(text) == only(text, github, "github_token")
    jwt = make_jwt()
    text = f"Authorization: Bearer {jwt}"
    assert find_secrets(text) == only(text, jwt, "jwt")
    key = KEYS["openai_api_key"][0]()
    text = f'password = "{key}"'
    assert find_secrets(text) == only(text, key, "openai_api_key")


# ---------------------------------------------------------------------------------------------
# Decoys: ordinary code and documentation. None of these may produce a finding.

PNG = "data:image/png;base64," + base64.b64encode(RNG.randbytes(30_000)).decode()
MINIFIED = (
    '!function(e,t){"object"==typeof exports?module.exports=t():e.lib=t()}(this,function()'
    '{var e={key:"a8f3c2",token:n.token,secret:function(){return r}};e.accessToken=t;'
    "return e.sk=function(a){return a.slice(1)},e})"
)
DECOYS = [
    # digests, ids, blobs
    "sha1: da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5(password) = 5f4dcc3b5aa765d61d8327deb882cf99",
    "const id = '550e8400-e29b-41d4-a716-446655440000';",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: Jane <jane@example.com>",
    f'<img src="{PNG}">',
    "blob = '" + base64.b64encode(RNG.randbytes(3000)).decode() + "'",
    "token_ids = " + base64.urlsafe_b64encode(RNG.randbytes(600)).decode(),
    MINIFIED,
    "color: #ff00aa; background: #1e1e1e; border-color: rgba(0,0,0,.5);",
    "const veryLongVariableNameForTheUserAccountSettings2 = computeSettings(user);",
    '"integrity": "sha512-Dk8rBqzZhyhgOyiA1WaVgL7iK/z3dTgS7aBF+YeAd6OabAsLeyLhZGzLyUVhtOt"',
    # sk- inside words, and documentation placeholders
    "Open the task-manager; it's a risk-free desk-top tweak for the disk-cleanup tool.",
    "import sklearn\nfrom sk-learn import x  # sk-learn-model-selection-cross-validation",
    '<div class="sk-chase"><div class="sk-chase-dot"></div></div>',
    "Set OPENAI_API_KEY=sk-... in your .env file",
    "Your key looks like sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    'openai.api_key = "YOUR_API_KEY"\nclient = OpenAI(api_key="<your-key>")',
    "Use sk-proj-YOUR_OPENAI_API_KEY_HERE as the key",
    'api_key = "sk-your-api-key-here"',
    "Keys are shown as sk-...AbCd in the dashboard",
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx and xoxb-your-bot-token",
    "AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX\naws_secret_access_key = YOUR_SECRET_KEY",
    "aws_secret_access_key = os.environ['AWS_SECRET_ACCESS_KEY']",
    "aws_secret_access_key_sha: da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "pk_live_51Hh2x3KZ9o8example and pk_test_TYooMQauvdEDq54NiTphI7jx",
    "sk_test_... or sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
    "AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    # JWT-shaped but not a JWT; unsigned JWT
    "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnopqrstuvwxyzABCDEF",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    # key material that is public or a placeholder
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(RNG.randbytes(600)).decode() + "\n"
    "-----END CERTIFICATE-----",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" + rand(300, B64) + " user@host",
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\n(paste your key here)\n-----END PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END OPENSSH PRIVATE KEY-----",
    # passwords in code that are not passwords
    'password = input("Password: ")',
    "password = getpass.getpass()\npassword = getpass()",
    "if password == confirm_password:\n    return True",
    'if password == "1234": print("weak")',
    "password VARCHAR(255) NOT NULL,\n  password_hash CHAR(60)",
    "password = user_password\npassword = self.password\npassword = args.password",
    "password = os.environ['DB_PASSWORD']\npassword = os.getenv('DB_PASSWORD')",
    "password: process.env.DB_PASS,\npassword: config.get('db.password'),",
    'password = ""\nPASSWORD=\npassword: ""',
    'password = "password"\n"password": "your_password"\nDB_PASSWORD=changeme',
    'password: "${DB_PASSWORD}"\npassword = "{password}"\npassword: "{{ vault_pw }}"',
    "password = '%s' % pw\npassword = '<password>'\npassword='********'",
    "password: str\npassword: Optional[str] = None\npassword?: string;",
    "password = hash_password(raw)\npassword = bcrypt.hashpw(pw, bcrypt.gensalt())",
    '<input type="password" name="password" id="password" placeholder="Password">',
    "'password' => 'required|string|min:8|confirmed',",
    'password: /^(?=.*[A-Z])(?=.*\\d).{8,}$/,\n"password": "^(?=.*\\d).{8,}$"',
    '{"password": "Пароль", "login": "Войти", "forgot_password": "Forgot your password?"}',
    '"password": "$2b$12$KIXQeJ8q1Z1Vq1O0oRQ0ZuYxXq0Z1Vq1O0oRQ0ZuYxXq0Z1Vq1O0"',
    "{ passive: false }\n$exPass = $_POST['exPass'];\nexmne_password=:hashedPassword",
    "POSTGRES_PASSWORD: postgres\nMYSQL_ROOT_PASSWORD: example\nMYSQL_PASSWORD: wordpress",
    "docker run -e MYSQL_ROOT_PASSWORD=my-secret-pw -d mysql",
    "The password is incorrect. Your password is required. password: 8 characters",
    'read -s -p "Password: " password\necho "$PWD"\nPWD=/home/user',
    'password_length = 12\npassword_field = "#password"\npasswords = ["a", "b"]',
    "Use a strong passphrase and enable 2FA; never reuse passwords.",
    # URLs that carry no password
    "postgresql://user:password@localhost:5432/mydb",
    "mysql://root:root@localhost/test and amqp://guest:guest@localhost:5672//",
    "mongodb+srv://<username>:<password>@cluster0.mongodb.net/test",
    "redis://:${REDIS_PASSWORD}@redis:6379 and postgres://postgres:postgres@db/app",
    "postgresql://scott:tiger@localhost/test and http://user:@host/",
    "postgres://myuser:mypassword@localhost and https://user:****@example.com",
    "git@github.com:user/repo.git and ssh://git@github.com:22/user/repo",
    "http://localhost:8080/api?next=/home and http://[::1]:8080/",
    'url = f"postgresql://{user}:{password}@{host}/{db}"',
    # secret-ish keys whose values are not credentials
    "app.secret_key = os.urandom(24)\nSECRET_KEY = 'dev'\nSECRET_KEY = 'your-secret-key'",
    "app.secret_key = 'super secret key'\nJWT_SECRET_KEY = 'change-this-in-production'",
    "tokenizer.pad_token = tokenizer.eos_token\nmax_tokens = 2048\noov_token='<OOV>'",
    "token = row.substr(0, rhs);\nconst Token = process.env.BOT_TOKEN;",
    "headers = {'Authorization': 'Bearer ' + token}\nfetch(url, {headers: {Authorization: "
    "`Bearer ${token}`}})",
    "Authorization: Bearer YOUR_ACCESS_TOKEN\nAuthorization: Bearer <token>",
    "Authorization: Basic dXNlcm5hbWU6cGFzc3dvcmQ=",
    "Basic understanding of Python is required; bearer tokens expire.",
    '"private_key_id": "' + rand(40, HEX) + '", "client_id": "' + rand(21, string.digits) + '"',
    "cache_key = 'user:12345:profile:v2'\nprimary key is id\n<li key={item.id}>",
    "The secret: her father was Matthew Broderick, a key figure, token of love.",
]


def test_enough_decoys() -> None:
    assert len(DECOYS) >= 30


@pytest.mark.parametrize("text", DECOYS, ids=[f"decoy{i}" for i in range(len(DECOYS))])
def test_decoys_have_no_findings(text: str) -> None:
    found = find_secrets(text)
    assert found == [], [(text[m.start : m.end], m.detector) for m in found]


def test_documented_examples_are_kept_or_redacted_as_documented() -> None:
    # Stripe's and jwt.io's published samples don't say "example": redacted (harmless).
    stripe = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
    assert find_secrets(stripe) == only(stripe, stripe, "stripe_key")
    jwt_io = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9l"
        "IiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    assert find_secrets(jwt_io) == only(jwt_io, jwt_io, "jwt")
    # AWS's documentation key pair says EXAMPLE: kept.
    assert find_secrets("aws_access_key_id=AKIAIOSFODNN7EXAMPLE") == []


def test_adversarial_inputs_finish() -> None:
    big = 1_000_000
    inputs = [
        "a" * big,
        base64.b64encode(RNG.randbytes(big * 3 // 4)).decode(),
        "sk-" * (big // 3),
        "password=" * (big // 9),
        "api_key: " * (big // 9),
        "eyJ." * (big // 4),
        "-----BEGIN PRIVATE KEY-----\n" * (big // 28),
        "a://b:c" * (big // 7),
        "x://" + "a:" * (big // 2) + "@",
        "M" * big,
        'password="' * (big // 10),
        "pass " * (big // 5),
        "AKIA" * (big // 4),
    ]
    for text in inputs:
        assert find_secrets(text) == []


# ---------------------------------------------------------------------------------------------
# The gate: a necessary condition, checked by polars' (Rust) regex engine.


def gate_matches(texts: list[str]) -> list[bool]:
    return pl.Series(texts, dtype=pl.String).str.contains(SECRET_GATE).to_list()


def assert_gate_sound(texts: list[str]) -> None:
    with_findings = [t for t in texts if find_secrets(t)]
    missed = [t for t, ok in zip(with_findings, gate_matches(with_findings), strict=True) if not ok]
    assert missed == []


def mutations(text: str, rng: random.Random, count: int) -> list[str]:
    pool = string.printable + "密码：是钥ſKİı\u00a0\u3000"
    out = []
    for _ in range(count):
        t = text
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(t) + 1)
            op = rng.randrange(6)
            if op == 0:
                t = t[:i] + rng.choice(pool) + t[i:]
            elif op == 1 and t:
                t = t[:i] + t[i + 1 :]
            elif op == 2 and t:
                t = t[:i] + rng.choice(pool) + t[i + 1 :]
            elif op == 3:
                t = t[:i]
            elif op == 4:
                t = t[i:]
            else:
                t = t[:i].swapcase() + t[i:]
        out.append(t)
    return out


def test_gate_matches_every_positive_and_mutation() -> None:
    texts = [t for t, _, _ in KEY_CASES + CONTEXT_CASES]
    assert all(gate_matches(texts))
    rng = random.Random(7)
    mutated = [m for t in texts + DECOYS if len(t) < 5000 for m in mutations(t, rng, 12)]
    assert_gate_sound(mutated)


def test_gate_rejects_most_ordinary_text() -> None:
    ordinary = [d for d in DECOYS if "password" not in d.lower() and "key" not in d.lower()]
    assert sum(gate_matches(ordinary)) < len(ordinary)
    assert gate_matches(["Hello, how are you?", "def f(x):\n    return x + 1"]) == [False, False]


FRAGMENTS = [
    *("password", "PASSWORD", "passwd", "pwd", "pass", "pw", "密码", "пароль", "mot de passe"),
    *("api_key", "API key", "token", "access_token", "secret", "client_secret", "x-api-key"),
    *("=", ":", " = ", ": ", "：", "是", " is ", "==", "=>", ":=", '"', "'", "`", "]", "\\"),
    *("<", ">", "</", "--", "-", " ", "\n", "\t", "(", ".", ",", "&", "?", "@", "/", "://"),
    *("sk-", "sk-proj-", "sk-ant-api03-", "AKIA", "ASIA", "aws_secret_access_key", "ghp_"),
    *("github_pat_", "glpat-", "xoxb-", "hooks.slack.com/services/T", "AIza", "GOCSPX-", "hf_"),
    *("whsec_", "sk_live_", "rk_test_", "eyJ", "eyJhbGciOiJIUzI1NiJ9", "PRIVATE KEY", "-----"),
    *("-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "Bearer ", "Basic "),
    *("postgres://", "u:", "@db", "MTEyMzQ1Njc4OTAxMjM0NTY3OA", ":AA", "123456789", "SG."),
    *("discord.com/api/webhooks/", "gsk_", "r8_", "xai-", "pplx-", "npm_", "dXNlcjpaeDkzIWFh"),
]


@st.composite
def fragment_texts(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(FRAGMENTS),
                st.text(alphabet=ALNUM + "+/_-", min_size=1, max_size=70),
                st.text(max_size=4),
            ),
            max_size=14,
        )
    )
    return "".join(parts)


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fragment_texts())
def test_gate_is_necessary_on_generated_texts(text: str) -> None:
    if find_secrets(text):
        assert gate_matches([text]) == [True]


def test_cue_words_skip_only_scans_that_find_nothing() -> None:
    """``find_secrets`` skips detectors whose cue words a text lacks: the same findings as
    running every detector, on every positive, decoy and mutation of them."""
    assert set(_CUE_WORDS) <= set(SECRET_DETECTORS)
    texts = [t for t, _, _ in KEY_CASES + CONTEXT_CASES] + DECOYS
    rng = random.Random(11)
    texts += [m for t in texts if len(t) < 5000 for m in mutations(t, rng, 6)]
    assert sum(1 for t in texts if find_secrets(t)) > 100
    # Letters Python's (?i) takes for ASCII ones that str.lower does not map to them.
    texts += [t.replace("i", "ı").replace("s", "ſ") for t in texts[:200]]
    texts += [t.upper().replace("I", "İ") for t in texts[:200]]
    for text in texts:
        assert find_secrets(text) == _find(text, SECRET_DETECTORS), text


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fragment_texts())
def test_cue_words_skip_nothing_on_generated_texts(text: str) -> None:
    assert find_secrets(text) == _find(text, SECRET_DETECTORS)


def test_case_insensitive_cues_fold_alike() -> None:
    """What Python matches for a cue, Rust's (?i) matches too. ASCII cues fold ASCII case only
    in Python ((?ai:...)); foreign password cues match as written, Capitalized or UPPER."""
    candidates = [chr(c) for c in range(0x80, 0x3000)] + list(string.ascii_letters)
    series = pl.Series(candidates)
    for letter in set("passwordkeytokensecretbearerbasicawsaccessis"):
        python = {c for c in candidates if re.fullmatch(letter, c, re.IGNORECASE | re.ASCII)}
        rust = set(series.filter(series.str.contains(f"^(?i:{letter})$")))
        assert python <= rust, letter
    for cue in FOREIGN_PASSWORD_CUES:
        variants = [cue, cue.capitalize(), cue.upper()]
        texts = [f"{v}: Zq81ma!x" for v in variants]
        assert all(gate_matches(texts)), cue
        assert [len(find_secrets(t)) for t in texts] == [1, 1, 1], cue


def test_rust_whitespace_is_python_whitespace() -> None:
    rust = pl.Series([chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000])
    spaces = rust.filter(rust.str.contains(r"^\s$")).to_list()
    assert all(re.fullmatch(r"\s", c) for c in spaces)


# ---------------------------------------------------------------------------------------------
# Labels, the recognizer name, and Presidio.


def test_labels_and_names() -> None:
    assert secret_label("openai_api_key") == "SECRET_OPENAI_API_KEY"
    assert all(re.fullmatch(r"SECRET_[A-Z0-9_]+", secret_label(d)) for d in SECRET_DETECTORS)
    assert all(re.fullmatch(r"[a-z0-9_]+", d) for d in SECRET_DETECTORS)
    assert len(set(SECRET_DETECTORS)) == len(SECRET_DETECTORS)
    with pytest.raises(ValueError):
        secret_label("nope")
    assert detector_of("secret:github_token") == "github_token"
    assert detector_of("secret:unknown") is None
    assert detector_of("EmailRecognizer") is None
    assert SECRETS_VERSION.startswith("secrets-v")


def test_module_imports_neither_dagster_nor_presidio() -> None:
    code = (
        "import sys, wildchat_dag.defs.pii_detection.credentials\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'presidio_analyzer'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def secret_engine():
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    from wildchat_dag.defs.pii_detection.pii_detection import configure_offline

    configure_offline()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(build_secret_recognizer())
    engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def test_presidio_analyzer_reports_secrets(secret_engine) -> None:
    RNG.seed("test_presidio_analyzer_reports_secrets")
    openai, github = KEYS["openai_api_key"][0](), KEYS["github_token"][0]()
    text = f"key {openai} and token {github}; password = 'Summer2023!'"
    results = sorted(
        secret_engine.analyze(text, language="en", entities=[SECRET_ENTITY]), key=lambda r: r.start
    )
    assert [(r.entity_type, text[r.start : r.end], r.score) for r in results] == [
        ("SECRET", openai, 1.0),
        ("SECRET", github, 1.0),
        ("SECRET", "Summer2023!", 1.0),
    ]
    names = [r.recognition_metadata["recognizer_name"] for r in results]
    assert names == ["secret:openai_api_key", "secret:github_token", "secret:password_assignment"]
    assert [detector_of(n) for n in names] == [
        "openai_api_key",
        "github_token",
        "password_assignment",
    ]
    assert results[0].recognition_metadata["secrets_version"] == SECRETS_VERSION
    assert secret_engine.analyze("nothing to see", language="en", entities=["SECRET"]) == []


def test_recognizer_alongside_presidio_patterns_and_candidate_rows() -> None:
    RNG.seed("test_recognizer_alongside_presidio_patterns_and_candidate_rows")
    from wildchat_dag.defs.pii_detection.pii_detection import build_pattern_engine, candidate_rows

    engine = build_pattern_engine()
    engine.registry.add_recognizer(build_secret_recognizer())
    key = KEYS["stripe_key"][0]()
    text = f"mail me at bob@example.com, stripe key {key}"
    results = engine.analyze(text, language="en", entities=["SECRET", "EMAIL_ADDRESS"])
    by_type = {r.entity_type: r for r in results}
    assert text[by_type["SECRET"].start : by_type["SECRET"].end] == key
    assert "EMAIL_ADDRESS" in by_type
    rows = candidate_rows("sha", text, 0, [by_type["SECRET"]])
    assert rows[0][1] == "SECRET" and rows[0][5] == key and rows[0][6] == "secret:stripe_key"
    # The recognizer answers only for its own entity.
    recognizer = build_secret_recognizer()
    assert recognizer.supported_entities == [SECRET_ENTITY]
    assert recognizer.supported_language == "en"
    assert recognizer.analyze(text, ["EMAIL_ADDRESS"], None) == []


# ---------------------------------------------------------------------------------------------
# Real WildChat text: findings are an explicit, reviewed list.

# Reviewed: the 187-conversation sample holds no credential. Its near misses, all correctly
# kept: `sk-XXXXXXXXXXXXXXXXXXXXXXXX` (a format description), `password="mypassword"`,
# `String password = "mypassword"`, `exmne_password=:hashedPassword` (a bind parameter),
# `{ passive: false }`, `openai.api_key = secrets["api_key"]`, `oov_token='<OOV>'`.
REVIEWED_SAMPLE_FINDINGS: list[tuple[str, str, str]] = []


def test_wildchat_sample_findings_are_reviewed(wildchat_sample) -> None:
    found = []
    texts = []
    for conversation in wildchat_sample:
        for message in conversation["conversation"]:
            text = message["content"] or ""
            texts.append(text)
            for m in find_secrets(text):
                found.append((conversation["conversation_hash"], m.detector, text[m.start : m.end]))
    assert found == REVIEWED_SAMPLE_FINDINGS
    # The gate lets through only a small share of real text.
    assert sum(gate_matches(texts)) < len(texts) * 0.1
