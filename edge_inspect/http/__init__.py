"""What the station web and the plant web share: password hashes and login limits, sessions, languages. One implementation each, used by both."""
