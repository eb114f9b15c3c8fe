"""The built-in detectors: what a secret looks like, in expressions that run in linear time.

Every expression is compiled with RE2 (`google-re2`), which matches in time linear in the
text whatever the expression, so no input (96 KB of `token`, a long run of key characters)
can stall the daemon the way a backtracking engine can. RE2 has no look-around, so a
detector that keeps part of its match (a variable's name, a URL's user) names the parts:
`k` is kept before the marker, `v` is the secret, `t` is kept after it.

The list covers the formats providers document (prefixes and lengths) and the places a
secret is written in commands, configs and output (assignments, headers, flags, URLs). We
keep our own list rather than a scanner library's plugins: those scan files line by line
with backtracking expressions and report findings, while the daemon needs spans replaced
inside every string of every event within a time budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused user pattern is reported by us, not on stderr
_OPTIONS.max_mem = 64 << 20  # a pattern whose automaton needs more is refused


def compile_linear(expression: str) -> re2._Regexp:
    """An expression compiled for linear-time matching; `re2.error` if RE2 refuses it."""
    return re2.compile(expression, _OPTIONS)


# Values that follow a secret's name but are not secrets: type annotations, empties.
NOT_SECRETS = frozenset(
    {
        "none",
        "null",
        "true",
        "false",
        "str",
        "bool",
        "int",
        "bytes",
        "optional",
        "undefined",
        "bearer",
        "basic",
    }
)


@dataclass(frozen=True)
class Detector:
    kind: str
    triggers: tuple[str, ...]  # lower-case literals; the expression runs only on text holding one
    expression: re2._Regexp


_SECRET_NAME = (
    r"[A-Za-z0-9_\-]*(?i:SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|API[_\-]?KEY|PRIVATE[_\-]?KEY"
    r"|ACCESS[_\-]?KEY|ACCOUNT[_\-]?KEY|AUTH[_\-]?KEY|SIGNING[_\-]?KEY|ENCRYPTION[_\-]?KEY)[A-Za-z0-9_\-]*"
)
_PEM = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"

_DETECTORS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "private-key",
        ("private key",),
        _PEM + r"(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    ),
    ("bearer-token", ("bearer",), r"(?P<k>(?i:\bbearer)\s+)(?P<v>[A-Za-z0-9._~+/\-]{8,}=*)"),
    ("basic-auth", ("basic",), r"(?P<k>(?i:\bbasic)\s+)(?P<v>[A-Za-z0-9+/]{8,}=*)"),
    # Other schemes of the header (bearer and basic ones are named above).
    (
        "authorization",
        ("authorization",),
        r"(?P<k>(?i:\b(?:proxy-)?authorization)[\"']?\s*[=:]\s*[\"']?(?i:(?:bearer|basic|token|digest|bot|apikey|"
        r"key|otp|negotiate|ntlm|hmac)\s+)?)(?P<v>[^\s\"',;\[]{4,})",
    ),
    ("anthropic-key", ("sk-ant-",), r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", ("sk-",), r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    (
        "stripe-key",
        ("_live_", "_test_", "whsec_"),
        r"\b(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9+/]{20,})",
    ),
    ("github-token", ("gh", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab-token", ("glpat-",), r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("slack-token", ("xox", "xapp-"), r"\b(?:xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[A-Za-z0-9\-]{10,})"),
    (
        "slack-webhook",
        ("hooks.slack.com",),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/]+",
    ),
    ("npm-token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36,}"),
    ("huggingface-token", ("hf_",), r"\bhf_[A-Za-z0-9]{30,}"),
    ("groq-key", ("gsk_",), r"\bgsk_[A-Za-z0-9]{40,}"),
    ("pypi-token", ("pypi-",), r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"),
    ("sendgrid-key", ("sg.",), r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
    ("digitalocean-token", ("_v1_",), r"\bdo[opr]_v1_[a-f0-9]{64}"),
    ("shopify-token", ("shp",), r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("linear-key", ("lin_api_",), r"\blin_api_[A-Za-z0-9]{40}"),
    ("replicate-token", ("r8_",), r"\br8_[A-Za-z0-9]{37}"),
    ("xai-key", ("xai-",), r"\bxai-[A-Za-z0-9]{60,}"),
    ("perplexity-key", ("pplx-",), r"\bpplx-[A-Za-z0-9]{40,}"),
    ("vault-token", ("hvs.", "hvb."), r"\bhv[sb]\.[A-Za-z0-9_\-]{24,}"),
    ("google-oauth-token", ("ya29.",), r"\bya29\.[A-Za-z0-9_\-]{20,}"),
    ("databricks-token", ("dapi",), r"\bdapi[a-f0-9]{32}"),
    ("atlassian-token", ("atatt",), r"\bATATT[A-Za-z0-9_\-=]{50,}"),
    ("telegram-bot-token", (":aa",), r"\b[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}"),
    ("aws-access-key", ("akia", "asia", "abia", "acca"), r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("google-api-key", ("aiza",), r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("jwt", ("eyj",), r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    # A URL's password, also with an empty user or an `@` inside it: up to the last `@`
    # before the path. The user holds no `[`, so an earlier marker is not taken for one.
    ("url-password", ("://",), r"(?P<k>://[^/\s:@\"'<>\[\]]*:)(?P<v>[^/\s\"'<>]+)(?P<t>@)"),
    # Password flags of common tools: `--password=x`, `--token x`, `mysql -pX`, `sshpass -p X`.
    (
        "password-flag",
        ("-pass", "-token", "-secret", "-api-key", "-apikey"),
        r"(?P<k>(?:^|\s)--?(?i:password|passwd|pass|token|secret|api-key|apikey|auth-token)(?:=|\s+)[\"']?)"
        r"(?P<v>[^\s\"'\-][^\s\"']*)",
    ),
    (
        "password-flag",
        ("mysql", "mariadb"),
        r"(?P<k>\b(?i:mysql[a-z]*|mariadb[a-z\-]*)\b[^\n|;&]*?\s-p)(?P<v>[^\s\"']+)",
    ),
    ("password-flag", ("sshpass",), r"(?P<k>\bsshpass\b[^\n|;&]*?\s-p\s*)(?P<v>[^\s\"']+)"),
    # `NAME=value`, `name: value`, `"Name": "value"` (JSON text), `x-api-key: value`.
    (
        "secret-assignment",
        ("secret", "token", "password", "passwd", "passphrase", "key"),
        r"(?P<k>\b" + _SECRET_NAME + r"[\"']?\s*[=:]\s*[\"']?)(?P<v>[^\s\"'#,;{}\[\]]{4,})",
    ),
]

DETECTORS: list[Detector] = [
    Detector(kind, triggers, compile_linear(expression)) for kind, triggers, expression in _DETECTORS
]
# A line opening or closing a private key block, for blocks split across a list of lines.
PEM_BEGIN = compile_linear(_PEM)
PEM_END = compile_linear(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
