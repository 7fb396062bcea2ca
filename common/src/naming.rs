//! Naming rules: repository keys, DNS-label-safe branch slugs, `PR` object names.

use sha2::{Digest, Sha256};

/// Longest DNS label (RFC 1123), and so the longest slug.
pub const DNS_LABEL_MAX: usize = 63;

/// A repository identity that ReviewApps are matched by: lowercase `host/owner/name`.
///
/// `githubRepository` values are compared case-insensitively and tolerate a trailing `/` or
/// `.git`, an `http://` scheme, and the `git@host:owner/name.git` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey(String);

/// Splits a repository URL into host, owner and name, as written (case kept); `None` when it
/// does not name `host/owner/name`. Accepts what [`RepoKey::parse`] accepts.
pub fn split_repository_url(url: &str) -> Option<(String, String, String)> {
    let s = url.trim();
    let rest = if let Some(r) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        r.to_owned()
    } else if let Some(r) = s.strip_prefix("git@") {
        r.replacen(':', "/", 1)
    } else if let Some(r) = s.strip_prefix("ssh://git@") {
        r.to_owned()
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let host = parts[0].rsplit('@').next().unwrap_or(parts[0]);
    Some((host.to_owned(), parts[1].to_owned(), parts[2].to_owned()))
}

impl RepoKey {
    /// Parses a repository URL; `None` when it does not name `host/owner/name`.
    pub fn parse(url: &str) -> Option<Self> {
        let (host, owner, name) = split_repository_url(url)?;
        Some(Self(format!("{host}/{owner}/{name}").to_ascii_lowercase()))
    }

    /// The repository owner, in lowercase.
    pub fn owner(&self) -> &str {
        self.0.split('/').nth(1).unwrap_or_default()
    }

    /// The repository name, in lowercase.
    pub fn name(&self) -> &str {
        self.0.split('/').nth(2).unwrap_or_default()
    }

    /// The key as text, `host/owner/name` in lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes a DNS-label-safe slug (RFC 1123: lowercase alphanumerics and `-`, starting and ending
/// with an alphanumeric, at most 63 characters) from a branch name.
///
/// Anything that is not an ASCII letter or digit (`/`, `_`, `.`, unicode …) becomes `-`, runs of
/// `-` collapse. A name that had to be shortened, or that has no ASCII letter or digit at all,
/// gets an 8-hex-digit hash of the original so distinct branches keep distinct slugs.
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len().min(DNS_LABEL_MAX));
    for c in branch.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let trimmed = slug.trim_matches('-');
    if !trimmed.is_empty() && trimmed.len() <= DNS_LABEL_MAX {
        return trimmed.to_owned();
    }
    let hash = short_hash(branch);
    // Room for "-" and the 8-digit hash.
    let keep = DNS_LABEL_MAX - 1 - hash.len();
    let head = trimmed[..trimmed.len().min(keep)].trim_end_matches('-');
    if head.is_empty() {
        format!("b-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

/// The name of the `PR` object recording one ReviewApp's environment for one pull request:
/// `<reviewapp>-pr<number>`, as DESIGN.md fixes.
pub fn pr_object_name(review_app: &str, number: u64) -> String {
    format!("{review_app}-pr{number}")
}

/// True when `s` is a valid RFC 1123 DNS label.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repository_urls_match_case_insensitively_with_suffixes() {
        let want = RepoKey::parse("https://github.com/mercari/not-exists").unwrap();
        for url in [
            "https://github.com/Mercari/Not-Exists",
            "https://github.com/mercari/not-exists/",
            "https://github.com/mercari/not-exists.git",
            "http://github.com/mercari/not-exists.git/",
            "git@github.com:mercari/not-exists.git",
            "ssh://git@github.com/mercari/not-exists",
            "  https://github.com/mercari/not-exists  ",
        ] {
            assert_eq!(RepoKey::parse(url).as_ref(), Some(&want), "{url}");
        }
        assert_eq!(want.as_str(), "github.com/mercari/not-exists");
        assert_eq!((want.owner(), want.name()), ("mercari", "not-exists"));
    }

    #[test]
    fn other_hosts_and_repositories_differ() {
        let a = RepoKey::parse("https://github.com/mercari/a").unwrap();
        assert_ne!(
            Some(&a),
            RepoKey::parse("https://ghe.example.com/mercari/a").as_ref()
        );
        assert_ne!(
            Some(&a),
            RepoKey::parse("https://github.com/mercari/b").as_ref()
        );
    }

    #[test]
    fn malformed_repository_urls_are_none() {
        for url in [
            "",
            "mercari/a",
            "https://github.com/mercari",
            "https://github.com/a/b/c",
            "https://github.com//b",
        ] {
            assert_eq!(RepoKey::parse(url), None, "{url}");
        }
    }

    #[test]
    fn slugs_of_common_branch_names() {
        assert_eq!(branch_slug("main"), "main");
        assert_eq!(branch_slug("feature/Add_Login"), "feature-add-login");
        assert_eq!(branch_slug("--weird--"), "weird");
        assert_eq!(branch_slug("release/v1.2.3"), "release-v1-2-3");
        assert_eq!(branch_slug("ユーザー/fix"), "fix");
    }

    #[test]
    fn slugs_without_ascii_get_a_hash() {
        let s = branch_slug("日本語");
        assert!(s.starts_with("b-") && is_dns_label(&s), "{s}");
        assert_ne!(s, branch_slug("中文"));
    }

    #[test]
    fn long_slugs_are_cut_with_a_distinguishing_hash() {
        let a = branch_slug(&format!("{}-a", "x".repeat(100)));
        let b = branch_slug(&format!("{}-b", "x".repeat(100)));
        assert_eq!(a.len(), DNS_LABEL_MAX);
        assert!(is_dns_label(&a) && is_dns_label(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn pr_object_names_follow_the_design() {
        assert_eq!(
            pr_object_name("reviewapp-sample", 123),
            "reviewapp-sample-pr123"
        );
    }

    proptest! {
        #[test]
        fn every_branch_name_gives_a_dns_label(branch in "\\PC{0,200}") {
            let s = branch_slug(&branch);
            prop_assert!(is_dns_label(&s), "{:?} -> {:?}", branch, s);
        }

        #[test]
        fn slugs_are_stable(branch in "[a-zA-Z0-9/_.-]{0,100}") {
            prop_assert_eq!(branch_slug(&branch), branch_slug(&branch));
        }
    }
}
