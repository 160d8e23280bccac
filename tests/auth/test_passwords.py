"""`crm.auth.passwords`: the password policy (length, blocklist)."""

from __future__ import annotations

import pytest

from crm.auth.passwords import MAX_LENGTH, MIN_LENGTH, check_password_strength, common_passwords


class TestCommonPasswords:
    def test_ships_at_least_ten_thousand(self) -> None:
        assert len(common_passwords()) >= 10_000

    def test_holds_well_known_breached_passwords(self) -> None:
        assert {"password123", "qwerty123", "iloveyou", "123456789"} <= common_passwords()

    def test_entries_are_lower_case_and_trimmed(self) -> None:
        assert all(p == p.lower().strip() and p for p in common_passwords())


class TestCheckPasswordStrength:
    @pytest.mark.parametrize("password", ["password123", "PassWord123", " qwerty123 "])
    def test_common_password_is_refused_in_any_case(self, password: str) -> None:
        with pytest.raises(ValueError, match="too common"):
            check_password_strength(password)

    def test_blank_password_is_refused(self) -> None:
        with pytest.raises(ValueError, match="whitespace"):
            check_password_strength(" " * MIN_LENGTH)

    def test_unusual_password_is_returned_unchanged(self) -> None:
        assert check_password_strength("  Unusual-Passw0rd-42 ") == "  Unusual-Passw0rd-42 "

    def test_limits_match_the_contract(self) -> None:
        assert (MIN_LENGTH, MAX_LENGTH) == (8, 128)
