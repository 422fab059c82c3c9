"""Secrets with detect-secrets' plugins used as a library on free text.

The regex plugins' own deny-list patterns give type and span (the scan API returns values, not
positions); JWTs are kept only when ``JwtTokenDetector.is_formally_valid``; private keys span from
their BEGIN line to the END line. For high-entropy strings detect-secrets looks only inside quotes
(it scans source code); here any unquoted token of 20+ characters of the plugin's charset counts when
its Shannon entropy, computed by the plugin, reaches the plugin's limit (base64 4.5, hex 3.0).
Detections carry the plugin's ``secret_type``, never the value.
"""

from __future__ import annotations

import re

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from goldenpath.guard._types import Detection

REGEX_PLUGINS: tuple[type[RegexBasedDetector], ...] = (
    AWSKeyDetector,
    ArtifactoryDetector,
    AzureStorageKeyDetector,
    BasicAuthDetector,
    DiscordBotTokenDetector,
    GitHubTokenDetector,
    GitLabTokenDetector,
    JwtTokenDetector,
    MailchimpDetector,
    NpmDetector,
    OpenAIDetector,
    PrivateKeyDetector,
    PypiTokenDetector,
    SendGridDetector,
    SlackDetector,
    SquareOAuthDetector,
    StripeDetector,
    TelegramBotTokenDetector,
    TwilioKeyDetector,
)
PATTERN_SCORE = 0.99
ENTROPY_SCORE = 0.6  # entropy alone also matches hashes and ids: lower, so a policy can tell them apart
_KEY_END = re.compile(r"-----END[ A-Z]*PRIVATE KEY[ A-Z]*-----")
_JWT_TAIL = re.compile(r"[A-Za-z0-9\-_.+/=]*")
_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
_HEX_TOKEN = re.compile(r"\b[0-9a-fA-F]{20,}\b")


def _secret_span(m: re.Match[str]) -> tuple[int, int]:
    """The captured secret where a plugin's pattern captures it after context (a URL's password), else
    the whole match (patterns that capture only a prefix such as ``ghp``)."""
    groups = [m.span(g) for g in range(1, (m.lastindex or 0) + 1) if m.group(g)]
    longest = max(groups, key=lambda span: span[1] - span[0], default=None)
    if longest is not None and longest[1] - longest[0] >= 8:
        return longest
    return m.span(0)


class SecretsDetector:
    def __init__(self, *, entropy: bool = True) -> None:
        self._patterns: list[tuple[str, re.Pattern[str], RegexBasedDetector]] = []
        for plugin_type in REGEX_PLUGINS:
            plugin = plugin_type()
            for pattern in plugin.denylist:
                self._patterns.append((str(plugin.secret_type), pattern, plugin))
        self._base64: HighEntropyStringsPlugin | None = Base64HighEntropyString() if entropy else None
        self._hex: HighEntropyStringsPlugin | None = HexHighEntropyString() if entropy else None

    def detect(self, text: str) -> list[Detection]:
        """Non-overlapping secret spans in text order; a pattern plugin wins over entropy."""
        found: list[tuple[int, int, str, float]] = []
        for secret_type, pattern, plugin in self._patterns:
            for m in pattern.finditer(text):
                start, end = _secret_span(m)
                if isinstance(plugin, JwtTokenDetector):
                    tail = _JWT_TAIL.match(text, end)  # the plugin's pattern ends lazily before the signature
                    end = tail.end() if tail else end
                    if not plugin.is_formally_valid(text[start:end]):
                        continue
                if isinstance(plugin, PrivateKeyDetector):
                    if text.endswith("-----", 0, start):
                        start -= 5
                    block_end = _KEY_END.search(text, m.end())
                    end = block_end.end() if block_end else len(text)
                found.append((start, end, secret_type, PATTERN_SCORE))
        if self._base64 is not None and self._hex is not None:
            entropy_plugins: tuple[tuple[HighEntropyStringsPlugin, re.Pattern[str]], ...] = (
                (self._hex, _HEX_TOKEN),
                (self._base64, _TOKEN),
            )
            for entropy_plugin, tokens in entropy_plugins:
                for m in tokens.finditer(text):
                    if entropy_plugin.calculate_shannon_entropy(m.group(0)) >= entropy_plugin.entropy_limit:
                        found.append((m.start(), m.end(), str(entropy_plugin.secret_type), ENTROPY_SCORE))
        chosen: list[tuple[int, int, str, float]] = []
        for start, end, kind, score in sorted(found, key=lambda f: (-f[3], f[0], -(f[1] - f[0]))):
            if not any(start < e and s < end for s, e, _, _ in chosen):
                chosen.append((start, end, kind, score))
        return [
            Detection(type="secret", score=score, start=start, end=end, detail=kind)
            for start, end, kind, score in sorted(chosen)
        ]
