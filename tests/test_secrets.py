"""The secrets vault: Fernet encryption at rest, key rotation, key file, no key leaks."""

from __future__ import annotations

import pickle
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from csp_core.secrets import SecretVault, SecretVaultError, generate_key
from csp_core.settings import Settings

PASSWORD = "Xq7!vR2#pL9m-ñ"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_KEY", raising=False)
    monkeypatch.delenv("SECRETS_KEY_FILE", raising=False)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    vault = SecretVault(generate_key())
    token = vault.encrypt(SecretStr(PASSWORD))
    assert PASSWORD not in token and "Xq7" not in token
    assert vault.decrypt(token).get_secret_value() == PASSWORD
    # Fernet tokens carry a random IV: the same secret never encrypts the same way twice.
    assert vault.encrypt(SecretStr(PASSWORD)) != token


def test_another_key_cannot_decrypt_and_the_error_leaks_nothing() -> None:
    key = generate_key()
    token = SecretVault(generate_key()).encrypt(SecretStr(PASSWORD))
    with pytest.raises(SecretVaultError) as failure:
        SecretVault(key).decrypt(token)
    assert token not in str(failure.value) and key not in str(failure.value)
    with pytest.raises(SecretVaultError):
        SecretVault(key).decrypt(token[:-4] + "AAAA")


def test_key_rotation_encrypts_with_first_and_decrypts_with_any() -> None:
    old, new = generate_key(), generate_key()
    old_token = SecretVault(old).encrypt(SecretStr(PASSWORD))
    rotating = SecretVault([new, old])
    assert rotating.decrypt(old_token).get_secret_value() == PASSWORD
    new_only = SecretVault(new)
    assert new_only.decrypt(rotating.encrypt(SecretStr("x"))).get_secret_value() == "x"
    assert new_only.decrypt(rotating.rotate(old_token)).get_secret_value() == PASSWORD
    # SECRETS_KEY may list the keys comma-separated, newest first.
    assert SecretVault(f"{new}, {old}").decrypt(old_token).get_secret_value() == PASSWORD


def test_repr_and_invalid_key_errors_never_show_the_key() -> None:
    key = generate_key()
    vault = SecretVault(SecretStr(key))
    assert key not in repr(vault) and key not in str(vault)
    assert "redacted" in repr(vault)
    with pytest.raises(TypeError):
        pickle.dumps(vault)
    bad = "not-a-real-fernet-key-but-secret"
    with pytest.raises(SecretVaultError) as failure:
        SecretVault(bad)
    assert bad not in str(failure.value)
    with pytest.raises(SecretVaultError):
        SecretVault([])


def test_from_settings_uses_the_configured_key(tmp_path: Path) -> None:
    key = generate_key()
    settings = _settings(secrets_key=key, secrets_key_file=tmp_path / "unused.key")
    vault = SecretVault.from_settings(settings)
    token = vault.encrypt(SecretStr(PASSWORD))
    assert Fernet(key.encode()).decrypt(token.encode()).decode() == PASSWORD
    assert not (tmp_path / "unused.key").exists()


def test_from_settings_generates_a_private_key_file_once(tmp_path: Path) -> None:
    key_file = tmp_path / "nested" / "secrets.key"
    settings = _settings(secrets_key_file=key_file)
    token = SecretVault.from_settings(settings).encrypt(SecretStr(PASSWORD))

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    Fernet(key.encode())  # a valid key
    # A later process reuses the same key (the file is not regenerated).
    assert SecretVault.from_settings(settings).decrypt(token).get_secret_value() == PASSWORD
    assert key_file.read_text().strip() == key


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    settings = _settings(secrets_key_file=tmp_path / "race.key")
    with ThreadPoolExecutor(8) as pool:
        vaults = list(pool.map(lambda _: SecretVault.from_settings(settings), range(8)))
    token = vaults[0].encrypt(SecretStr(PASSWORD))
    assert all(v.decrypt(token).get_secret_value() == PASSWORD for v in vaults)
