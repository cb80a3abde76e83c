"""Security of members' accounts and money; see SECURITY.md for every protection and the
test that proves it.

| module | what |
|---|---|
| `totp` | TOTP two-factor (RFC 6238, pyotp): secrets sealed with the server key, replay memory, recovery codes |
| `sms` | SMS two-factor: E.164 phones, six-digit codes, the log and Twilio-shaped gateways |
| `throttle` | failed log ins per account and per IP, wrong codes, public forms: counted in the store, lockouts |
| `audit` | the append-only, hash-chained audit log (who, what, when, from which IP) |
| `addresses` | withdrawal address book with a hold, e-mail confirmation of each withdrawal, daily limits |
| `service` | `Security`: the second-factor rules every protected action goes through, given to pages and funds by node/bootstrap.py |

The `[security]` and `[sms]` tables of cluster.toml are parsed in node/config/security.py. The
pages are in node/web/pages/security/.
"""
