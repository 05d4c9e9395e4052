"""The shared secrets/TLS/redirect rules of the network backends (no server needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from yarl import URL

from rex_stream.adapters.security import (
    RedirectRules,
    TlsFiles,
    custom_headers,
    header_value,
    renamed_options,
    token_headers,
)
from rex_stream.errors import BackendError, ConfigError


def test_current_names_pass_without_a_warning() -> None:
    options = {"ca_bundle": "ca.pem", "client_cert": "c.pem", "client_key": "k.pem"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed_options(options) == options


@pytest.mark.parametrize(
    ("old", "new"),
    [("ssl_ca", "ca_bundle"), ("ssl_cert", "client_cert"), ("ssl_key", "client_key")],
)
def test_deprecated_names_map_to_the_new_ones_with_a_warning(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated; use {new}=x\.pem"):
        assert renamed_options({old: "x.pem", "output": "y"}) == {new: "x.pem", "output": "y"}
    with pytest.raises(ConfigError, match=rf"give {new}= only"):
        renamed_options({old: "a", new: "b"})


def test_header_values_come_from_env_files_or_literals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REX_TEST_SECRET", "  s3cret \n")
    (tmp_path / "key").write_text("from-file\n")
    options = {
        "header.X-Env": "env:REX_TEST_SECRET",
        "header.X-File": f"file:{tmp_path / 'key'}",
        "header.X-Literal": "plain",
        "output": "ignored",
    }
    assert custom_headers(options) == {
        "X-Env": "s3cret", "X-File": "from-file", "X-Literal": "plain"
    }  # fmt: skip
    monkeypatch.delenv("REX_TEST_SECRET")
    with pytest.raises(ConfigError, match="header X-Env: environment variable REX_TEST_SECRET"):
        header_value("X-Env", "env:REX_TEST_SECRET")


def test_token_errors_never_show_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REX_TEST_TOKEN", "very-secret-token")
    with pytest.raises(ConfigError) as caught:
        token_headers({"token_env": "REX_TEST_TOKEN", "auth": "basic"})
    assert "very-secret-token" not in str(caught.value)
    with pytest.raises(ConfigError, match="either token_env or token_file"):
        token_headers({"token_env": "REX_TEST_TOKEN", "token_file": "x"})
    with pytest.raises(ConfigError, match="without token_env"):
        token_headers({"auth": "triton"})


def test_tls_files_are_checked_when_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca_bundle=.*missing.pem: cannot read it"):
        TlsFiles.from_options({"ca_bundle": str(tmp_path / "missing.pem")})
    (tmp_path / "key.pem").write_text("x")
    with pytest.raises(ConfigError, match="client_key=PATH needs client_cert=PATH"):
        TlsFiles.from_options({"client_key": str(tmp_path / "key.pem")})
    assert TlsFiles.from_options({}).verifies_default
    assert TlsFiles.from_options({"insecure": "true"}).insecure


def test_redirect_rules() -> None:
    rules = RedirectRules(URL("https://models.example:8443/v2"))
    assert rules.sends_secrets_to(URL("https://models.example:8443/other"))
    assert not rules.sends_secrets_to(URL("https://models.example:9000/v2"))
    assert not rules.sends_secrets_to(URL("http://models.example:8443/v2"))
    rules.check(URL("https://a/x"), URL("https://b/y"), "a")  # another origin: allowed here
    with pytest.raises(BackendError, match=r"refusing the downgrade \(allow_insecure_redirect"):
        rules.check(URL("https://a/x"), URL("http://a/x"), "https://a/x")
    with pytest.raises(BackendError, match="not an http"):
        rules.check(URL("https://a/x"), URL("ftp://a/x"), "https://a/x")
    RedirectRules(rules.home, allow_downgrade=True).check(
        URL("https://a/x"), URL("http://a/x"), "https://a/x"
    )
    with pytest.raises(BackendError, match="refusing to send the token there"):
        rules.check_secret(URL("https://elsewhere:8443/v2"), "the server")
