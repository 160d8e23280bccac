"""Password policy: length and a blocklist of commonly breached passwords.

The blocklist (`data/common-passwords.txt.gz`, 19 640 entries) is the list Django ships
(BSD licence), itself drawn from public breach corpora.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

MIN_LENGTH = 8
MAX_LENGTH = 128


@lru_cache
def common_passwords() -> frozenset[str]:
    data = resources.files("crm.auth").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(line.strip() for line in gzip.decompress(data).decode().splitlines() if line.strip())


def check_password_strength(value: str) -> str:
    if not value.strip():
        raise ValueError("the password may not be only whitespace")
    if value.lower().strip() in common_passwords():
        raise ValueError("this password is too common (found in lists of breached passwords)")
    return value


# Passwords are taken exactly as typed: input models strip strings, but a password that is stored
# stripped in one place (an API body) and hashed as typed in another (the CLI) would never match.
_EXACT = StringConstraints(strip_whitespace=False)

#: A password being set: 8..128 characters, not on the blocklist.
NewPassword = Annotated[
    str, _EXACT, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH), AfterValidator(check_password_strength)
]
#: A password being checked (login, current password): any non-empty value up to the maximum.
PasswordInput = Annotated[str, _EXACT, Field(min_length=1, max_length=MAX_LENGTH)]
