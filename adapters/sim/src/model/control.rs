//! Control operations: what a test changes or reads while the backend runs. The same enum is
//! decoded from the JSON of the `/__sim/…` endpoints and passed to [`crate::model::Sim::control`].

use serde::{Deserialize, Serialize};

use super::config::{FaultRule, Quota};

/// One control operation. JSON form: `{"op": "<snake_case name>", …fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// Replace every fault rule. Answers `{"faults": n}`.
    SetFaults {
        /// The new rules.
        faults: Vec<FaultRule>,
    },
    /// Add one fault rule. Answers `{"faults": n}`.
    AddFault {
        /// The rule.
        rule: FaultRule,
    },
    /// Remove every fault rule. Answers `{"faults": 0}`.
    ClearFaults,
    /// Zero the used quota of one account (or all). Answers `{"reset": [labels]}`.
    ResetQuota {
        /// Account label; `None` = all.
        #[serde(default)]
        account: Option<String>,
    },
    /// Change the quota of an account. Answers `{"account": label}`.
    SetQuota {
        /// Account label.
        account: String,
        /// The new allowance.
        quota: Quota,
    },
    /// Read every counter. Answers the [`super::Counters`] JSON.
    Counters,
    /// Complete the browser login `uuid` for `account`; the poller must then present the
    /// verifier whose `base64url(sha256(verifier))` equals `challenge`. Answers `{"uuid": …}`.
    CompleteLogin {
        /// The login uuid the client polls with.
        uuid: String,
        /// Account label to log in as.
        account: String,
        /// The PKCE challenge the client put in the login URL.
        challenge: String,
    },
    /// Make every issued token of one account (or all) expired now. Answers `{"expired": n}`.
    ExpireTokens {
        /// Account label; `None` = all.
        #[serde(default)]
        account: Option<String>,
    },
    /// Issue an access token for `account`. Answers `{"access_token": …, "refresh_token": …}`.
    IssueToken {
        /// Account label.
        account: String,
    },
    /// Change the `GetServerConfig` `http2_config` answer. Answers `{"http2_config": n}`.
    SetHttp2Config {
        /// The new value (0–4).
        value: i32,
    },
}

impl super::Sim {
    /// Runs a control operation — the same operations as the `/__sim/…` endpoints — and
    /// returns its JSON answer (documented on each [`Control`] variant).
    pub fn control(
        &mut self,
        cmd: Control,
        now: std::time::Instant,
        wall: std::time::SystemTime,
    ) -> Result<serde_json::Value, String> {
        use serde_json::json;
        let _ = now;
        let account = |sim: &Self, label: &str| {
            sim.accounts
                .by_label(label)
                .ok_or_else(|| format!("unknown account {label:?}"))
        };
        Ok(match cmd {
            Control::SetFaults { faults } => {
                self.faults = faults;
                json!({"faults": self.faults.len()})
            }
            Control::AddFault { rule } => {
                self.faults.push(rule);
                json!({"faults": self.faults.len()})
            }
            Control::ClearFaults => {
                self.faults.clear();
                json!({"faults": 0})
            }
            Control::ResetQuota { account: label } => {
                let a = match label.as_deref() {
                    Some(l) => Some(account(self, l)?),
                    None => None,
                };
                json!({"reset": self.accounts.reset_quota(a)})
            }
            Control::SetQuota {
                account: label,
                quota,
            } => {
                let a = account(self, &label)?;
                self.accounts.list[a].config.quota = quota;
                if let Some(c) = self.config.accounts.get_mut(a) {
                    c.quota = quota;
                }
                json!({"account": label})
            }
            Control::Counters => {
                serde_json::to_value(self.counters()).map_err(|e| e.to_string())?
            }
            Control::CompleteLogin {
                uuid,
                account: label,
                challenge,
            } => {
                let a = account(self, &label)?;
                self.accounts.complete_login(&uuid, a, &challenge);
                json!({"uuid": uuid})
            }
            Control::ExpireTokens { account: label } => {
                let a = match label.as_deref() {
                    Some(l) => Some(account(self, l)?),
                    None => None,
                };
                json!({"expired": self.accounts.expire(a, wall)})
            }
            Control::IssueToken { account: label } => {
                let a = account(self, &label)?;
                self.global.tokens_issued += 1;
                let access = self
                    .accounts
                    .issue(a, super::accounts::TokenKind::Access, wall);
                let refresh = self
                    .accounts
                    .issue(a, super::accounts::TokenKind::Refresh, wall);
                json!({"access_token": access, "refresh_token": refresh})
            }
            Control::SetHttp2Config { value } => {
                self.config.http2_config = value;
                json!({"http2_config": value})
            }
        })
    }
}
