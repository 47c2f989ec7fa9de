//! POSIX sh quoting, shared by the daemon (scripts it writes for hosts) and the command line
//! (remote commands it gives ssh).

/// Single-quotes a value for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(super::sh_quote("it's"), "'it'\\''s'");
        assert_eq!(super::sh_quote(""), "''");
    }
}
