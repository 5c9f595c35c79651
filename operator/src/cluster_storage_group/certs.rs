//! The proxy's certificates (pure): a CA of the group (10 years) and the proxy's server
//! certificate for its Service's DNS names, signed by it (1 year), kept in one Secret of the
//! operator's namespace. A stored pair is reused while the server certificate has more than
//! [`RENEW_BEFORE`] left and names what it should; otherwise a new one is signed by the stored
//! CA, and a new CA is made only when the stored one is missing, unusable or about to expire.
//! Keys never reach a log, an Event, a status or `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// Key of the TLS Secret with the CA's certificate (PEM).
pub const CA_CERT: &str = "ca.crt";
/// Key of the TLS Secret with the CA's private key (PEM); never mounted in a pod.
pub const CA_KEY: &str = "ca.key";
/// Key of the TLS Secret with the proxy's certificate (PEM).
pub const TLS_CERT: &str = "tls.crt";
/// Key of the TLS Secret with the proxy's private key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * DAY);
/// How long a new server certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// A certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY);
/// Seconds of a day.
const DAY: u64 = 24 * 60 * 60;

/// The proxy's CA and server certificate with their keys, in PEM. `Debug` shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyTls {
    /// The CA's certificate.
    pub ca_cert: String,
    /// The CA's private key.
    pub ca_key: String,
    /// The proxy's certificate.
    pub cert: String,
    /// The proxy's private key.
    pub key: String,
}

impl fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyTls(keys hidden)")
    }
}

impl ProxyTls {
    /// Reads the four keys of a TLS Secret's data; `None` if one is missing or not text.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Option<Self> {
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        Some(Self {
            ca_cert: text(CA_CERT)?,
            ca_key: text(CA_KEY)?,
            cert: text(TLS_CERT)?,
            key: text(TLS_KEY)?,
        })
    }

    /// The TLS Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }
}

/// What to do with the stored certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// They are good: keep them.
    Keep,
    /// The CA is good, the server certificate is not: sign a new one with the CA.
    NewLeaf,
    /// There is no usable CA: make a new CA and a server certificate.
    NewCa,
}

/// Decides what to do with `found` (the stored certificates, if any) for a proxy reached
/// under `names`, at `now`.
pub fn renewal(found: Option<&ProxyTls>, names: &[String], now: Timestamp) -> Renewal {
    let Some(found) = found else {
        return Renewal::NewCa;
    };
    let Some(ca) = pem(&found.ca_cert) else {
        return Renewal::NewCa;
    };
    let Ok(ca) = ca.parse_x509() else {
        return Renewal::NewCa;
    };
    let ca_key_matches =
        KeyPair::from_pem(&found.ca_key).is_ok_and(|k| k.subject_public_key_info() == ca.public_key().raw);
    // The CA must outlive a new server certificate, or the latter would end with it.
    if !ca.is_ca() || !ca_key_matches || !valid_for(&ca, now, LEAF_VALIDITY + RENEW_BEFORE) {
        return Renewal::NewCa;
    }
    let leaf_good = pem(&found.cert).is_some_and(|leaf| {
        leaf.parse_x509().is_ok_and(|leaf| {
            leaf.verify_signature(Some(ca.public_key())).is_ok()
                && valid_for(&leaf, now, RENEW_BEFORE)
                && dns_names(&leaf) == sorted(names)
                && KeyPair::from_pem(&found.key).is_ok_and(|k| k.subject_public_key_info() == leaf.public_key().raw)
        })
    });
    if leaf_good { Renewal::Keep } else { Renewal::NewLeaf }
}

/// Makes what `renewal` asks for: a new server certificate for `names` (the first is also
/// its common name) valid from `now`, signed by the CA of `found` ([`Renewal::NewLeaf`]) or
/// by a new CA for `group`. [`Renewal::Keep`] returns `found` as it is.
pub fn issue(
    found: Option<&ProxyTls>,
    renewal: Renewal,
    group: &str,
    names: &[String],
    now: Timestamp,
) -> Result<ProxyTls, rcgen::Error> {
    let stored = match (renewal, found) {
        (Renewal::Keep, Some(found)) => return Ok(found.clone()),
        (Renewal::NewLeaf, Some(found)) => Some(found),
        _ => None,
    };
    let date = |at: Timestamp| {
        let date = at.to_zoned(TimeZone::UTC).date();
        rcgen::date_time_ymd(date.year().into(), date.month() as u8, date.day() as u8)
    };
    let after = |length: Duration| Timestamp::from_second(now.as_second() + length.as_secs() as i64);
    let yesterday = Timestamp::from_second(now.as_second() - DAY as i64).unwrap_or(now);
    let (ca_cert, ca_key, issuer) = match stored {
        Some(found) => {
            let issuer = Issuer::from_ca_cert_pem(&found.ca_cert, KeyPair::from_pem(&found.ca_key)?)?;
            (found.ca_cert.clone(), found.ca_key.clone(), issuer)
        }
        None => {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params
                .distinguished_name
                .push(DnType::CommonName, format!("hort-store {group} CA"));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = date(yesterday);
            params.not_after = date(after(CA_VALIDITY).unwrap_or(now));
            let key = KeyPair::generate()?;
            let key_pem = key.serialize_pem();
            let ca = CertifiedIssuer::self_signed(params, key)?;
            let issuer = Issuer::from_ca_cert_der(ca.der(), KeyPair::from_pem(&key_pem)?)?;
            (ca.pem(), key_pem, issuer)
        }
    };
    let mut params = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first.clone());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date(yesterday);
    params.not_after = date(after(LEAF_VALIDITY).unwrap_or(now));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ProxyTls {
        ca_cert,
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The first PEM block of `text`.
fn pem(text: &str) -> Option<Pem> {
    x509_parser::pem::parse_x509_pem(text.as_bytes()).ok().map(|(_, p)| p)
}

/// Whether `cert` is valid now and still for `left`.
fn valid_for(cert: &X509Certificate<'_>, now: Timestamp, left: Duration) -> bool {
    let validity = cert.validity();
    let now = now.as_second();
    validity.not_before.timestamp() <= now && validity.not_after.timestamp() > now + left.as_secs() as i64
}

/// The DNS names of `cert`'s subject alternative names, sorted.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    sorted(&names)
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "hort-store-shared.hort-system.svc",
            "hort-store-shared.hort-system.svc.cluster.local",
        ]
        .map(String::from)
        .into()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn days_later(t: Timestamp, days: i64) -> Timestamp {
        Timestamp::from_second(t.as_second() + days * DAY as i64).unwrap()
    }

    fn parsed<T>(pem_text: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        let pem = pem(pem_text).unwrap();
        f(&pem.parse_x509().unwrap())
    }

    /// Whether `tls.cert` was signed by the CA in `tls.ca_cert`.
    fn signed_by_its_ca(tls: &ProxyTls) -> bool {
        parsed(&tls.ca_cert, |ca| {
            parsed(&tls.cert, |leaf| leaf.verify_signature(Some(ca.public_key())).is_ok())
        })
    }

    #[test]
    fn a_new_ca_signs_a_server_certificate_for_the_service_names() {
        let now = at("2026-12-01T12:00:00Z");
        assert_eq!(renewal(None, &names(), now), Renewal::NewCa);
        let tls = issue(None, Renewal::NewCa, "shared", &names(), now).unwrap();
        assert!(signed_by_its_ca(&tls));
        parsed(&tls.ca_cert, |ca| {
            assert!(ca.is_ca());
            let years = (ca.validity().not_after.timestamp() - now.as_second()) / (365 * DAY as i64);
            assert_eq!(years, 9, "ten years from yesterday's midnight, less a day");
        });
        parsed(&tls.cert, |leaf| {
            assert!(!leaf.is_ca());
            assert_eq!(dns_names(leaf), sorted(&names()));
            let days = (leaf.validity().not_after.timestamp() - now.as_second()) / DAY as i64;
            assert_eq!(days, 364, "a year, to the day's midnight");
        });
        assert_eq!(renewal(Some(&tls), &names(), now), Renewal::Keep);
        assert_eq!(
            issue(Some(&tls), Renewal::Keep, "shared", &names(), now).unwrap(),
            tls,
            "kept as it is"
        );
        let shown = format!("{tls:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains("CERTIFICATE"),
            "{shown}"
        );
    }

    #[test]
    fn a_server_certificate_near_its_end_or_for_other_names_is_replaced_under_the_same_ca() {
        let now = at("2026-12-01T12:00:00Z");
        let tls = issue(None, Renewal::NewCa, "shared", &names(), now).unwrap();
        assert_eq!(renewal(Some(&tls), &names(), days_later(now, 300)), Renewal::Keep);
        assert_eq!(renewal(Some(&tls), &names(), days_later(now, 340)), Renewal::NewLeaf);
        let mut other = names();
        other.push("hort-store-shared.hort-system".into());
        assert_eq!(renewal(Some(&tls), &other, now), Renewal::NewLeaf);

        let later = days_later(now, 340);
        let renewed = issue(Some(&tls), Renewal::NewLeaf, "shared", &names(), later).unwrap();
        assert_eq!(
            (&renewed.ca_cert, &renewed.ca_key),
            (&tls.ca_cert, &tls.ca_key),
            "the CA stays"
        );
        assert_ne!(renewed.cert, tls.cert);
        assert_ne!(renewed.key, tls.key);
        assert!(signed_by_its_ca(&renewed));
        assert_eq!(renewal(Some(&renewed), &names(), later), Renewal::Keep);
    }

    #[test]
    fn a_missing_mismatched_or_expiring_ca_is_replaced() {
        let now = at("2026-12-01T12:00:00Z");
        let tls = issue(None, Renewal::NewCa, "shared", &names(), now).unwrap();
        let other = issue(None, Renewal::NewCa, "other", &names(), now).unwrap();
        let broken = ProxyTls {
            ca_cert: "not a certificate".into(),
            ..tls.clone()
        };
        assert_eq!(renewal(Some(&broken), &names(), now), Renewal::NewCa);
        let wrong_key = ProxyTls {
            ca_key: other.ca_key.clone(),
            ..tls.clone()
        };
        assert_eq!(renewal(Some(&wrong_key), &names(), now), Renewal::NewCa);
        assert_eq!(
            renewal(Some(&tls), &names(), days_later(now, 3650 - 300)),
            Renewal::NewCa,
            "a CA that would end before a new server certificate"
        );
        let foreign_leaf = ProxyTls {
            cert: other.cert.clone(),
            key: other.key.clone(),
            ..tls.clone()
        };
        assert_eq!(
            renewal(Some(&foreign_leaf), &names(), now),
            Renewal::NewLeaf,
            "a server certificate another CA signed"
        );
        let wrong_leaf_key = ProxyTls {
            key: other.key.clone(),
            ..tls.clone()
        };
        assert_eq!(renewal(Some(&wrong_leaf_key), &names(), now), Renewal::NewLeaf);
        let fresh = issue(Some(&broken), Renewal::NewCa, "shared", &names(), now).unwrap();
        assert_ne!(fresh.ca_cert, tls.ca_cert);
        assert!(signed_by_its_ca(&fresh));
    }

    #[test]
    fn the_secret_data_holds_the_four_keys() {
        let tls = issue(None, Renewal::NewCa, "shared", &names(), at("2026-12-01T12:00:00Z")).unwrap();
        let data = tls.to_data();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ca.crt", "ca.key", "tls.crt", "tls.key"]
        );
        assert_eq!(ProxyTls::from_data(&data), Some(tls));
        let mut partial = data;
        partial.remove("ca.key");
        assert_eq!(ProxyTls::from_data(&partial), None);
    }
}
