//! Maps the validated [`GatewayConfig`] onto the SIP server's settings.

use super::{ConfigError, GatewayConfig, Problem};
use crate::dtmf::DtmfSource;
use crate::media::MediaConfig;
use crate::rtp::PortAllocator;
use crate::sip::{DigestConfig, DtmfMethods, RingingConfig, SipServerConfig, TrunkConfig};

impl GatewayConfig {
    /// The SIP server's settings: listen address, trunks with their rate
    /// limit and digest credentials, ringing, message size, drain timeout,
    /// media (address, port pool, jitter buffer, RTP timeout) and espeak-ng.
    ///
    /// The media address is [`GatewayConfig::media_ip`]; it is both bound
    /// and advertised, so a `public_ip` must be an address of this host.
    pub fn sip_server_config(&self) -> Result<SipServerConfig, ConfigError> {
        let ports = self.rtp.ports;
        let pool =
            PortAllocator::new(ports.low..=ports.high).map_err(|_| ConfigError::Invalid {
                key: "rtp.ports".to_owned(),
                problem: Problem::NoPortPair {
                    low: ports.low,
                    high: ports.high,
                },
            })?;
        let media_ip = self.media_ip();
        let mut media = MediaConfig::new(media_ip, pool);
        media.jitter_depth_ms = self.rtp.jitter_ms;
        media.rtp_timeout = self.rtp.timeout();
        media.rfc4733 = self
            .trunks
            .iter()
            .any(|t| t.accepts_dtmf(DtmfSource::Rfc4733));
        media.inband_dtmf = self
            .trunks
            .iter()
            .any(|t| t.accepts_dtmf(DtmfSource::Inband));

        let mut sip = SipServerConfig::new(self.sip.listen, media);
        sip.public_ip = Some(media_ip);
        sip.ringing = RingingConfig {
            enabled: self.sip.ringing,
            delay: self.sip.ring_delay(),
        };
        sip.max_message_size = self.sip.max_message_bytes as usize;
        sip.drain_timeout = self.shutdown.drain_timeout();
        sip.say = self.tts.say_config();
        sip.trunks = self
            .trunks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let allow = t
                    .allow
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        // Never drop an entry: an empty list means "any source".
                        c.to_string().parse().map_err(|_| ConfigError::Invalid {
                            key: format!("trunks[{i}].allow[{j}]"),
                            problem: Problem::BadName(c.to_string()),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TrunkConfig {
                    name: t.name.clone(),
                    allow,
                    digest: t.auth.as_ref().map(|a| DigestConfig {
                        realm: a.realm.clone(),
                        username: a.username.clone(),
                        password: a.password.clone(),
                    }),
                    invites_per_second: self.sip.invite_rate_per_source.per_second,
                    invite_burst: self.sip.invite_rate_per_source.burst,
                    dtmf: DtmfMethods {
                        rfc4733: t.accepts_dtmf(DtmfSource::Rfc4733),
                        info: t.accepts_dtmf(DtmfSource::Info),
                        inband: t.accepts_dtmf(DtmfSource::Inband),
                    },
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(sip)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_setting() {
        let cfg = GatewayConfig::from_toml_str(
            r#"
[sip]
listen = "127.0.0.1:0"
ringing = false
ring_ms = 0
max_message_bytes = 4096
[sip.invite_rate_per_source]
per_second = 2
burst = 4
[rtp]
ports = "30000-30009"
jitter_ms = 40
timeout_s = 9
[shutdown]
drain_timeout_s = 3
[tts]
voice = "fr"
[[trunks]]
name = "carrier"
allow = ["10.0.0.0/8"]
dtmf = ["info"]
[trunks.auth]
username = "u"
password = "p"
"#,
        )
        .unwrap();
        let s = cfg.sip_server_config().unwrap();
        assert_eq!(s.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(s.public_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            s.ringing,
            RingingConfig {
                enabled: false,
                delay: std::time::Duration::ZERO
            }
        );
        assert_eq!(s.max_message_size, 4096);
        assert_eq!(s.drain_timeout, std::time::Duration::from_secs(3));
        assert_eq!(s.say.voice, "fr");
        assert_eq!(s.media.jitter_depth_ms, 40);
        assert_eq!(s.media.rtp_timeout, std::time::Duration::from_secs(9));
        assert_eq!(s.media.ports.capacity(), 5);
        assert!(!s.media.rfc4733 && !s.media.inband_dtmf);
        let t = &s.trunks[0];
        assert_eq!(t.name, "carrier");
        assert!(t.allows("10.1.2.3".parse().unwrap()));
        assert!(!t.allows("11.1.2.3".parse().unwrap()));
        assert_eq!((t.invites_per_second, t.invite_burst), (2, 4));
        assert_eq!(
            t.dtmf,
            DtmfMethods {
                rfc4733: false,
                info: true,
                inband: false
            }
        );
        let d = t.digest.as_ref().unwrap();
        assert_eq!(
            (d.username.as_str(), d.password.as_str(), d.realm.as_str()),
            ("u", "p", "voxgate")
        );
    }

    #[test]
    fn default_trunk_allows_only_loopback() {
        let s = GatewayConfig::default().sip_server_config().unwrap();
        assert_eq!(s.trunks.len(), 1);
        assert!(s.trunks[0].allows("127.0.0.1".parse().unwrap()));
        assert!(s.trunks[0].allows("::1".parse().unwrap()));
        assert!(!s.trunks[0].allows("192.168.1.1".parse().unwrap()));
    }
}
