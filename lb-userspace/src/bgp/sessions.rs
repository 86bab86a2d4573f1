//! Which of BIRD's BGP sessions are Established and export lbd's routes:
//! BIRD taking lbd's configure says nothing about whether the router
//! hears of it (a mistyped `neighbor` or `local as`, or an export filter
//! that names no protocol of lbd's, leaves the node out of the router's
//! ECMP set while BIRD runs lbd's protocols as asked). lbd asks BIRD
//! `show protocols` and, for each BGP session that is up,
//! `show route exported '<session>' protocol '<lbd protocol>'` (what BIRD
//! sent the neighbour, after the export filter), and reads the answers
//! here.

use std::{collections::BTreeSet, net::IpAddr};

use serde::{Deserialize, Serialize};

/// BIRD's name of its BGP protocol in `show protocols`' Proto column.
const BGP_PROTO: &str = "BGP";
/// BIRD's protocol state of a BGP session that is Established.
const STATE_UP: &str = "up";
/// The longest number of BGP sessions asked about: a BIRD with more
/// would make each check ask as many questions.
pub(crate) const MAX_SESSIONS: usize = 256;

/// One BGP session of BIRD's and which of lbd's addresses it exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpSession {
    /// BIRD's protocol name (`router1_v4`).
    pub name: String,
    /// Whether the session is Established (BIRD's protocol state `up`):
    /// only such a session tells the router anything.
    pub established: bool,
    /// BIRD's info column: `Established`, or the state it is stuck in and
    /// its last error (`Active  Socket: Connection refused`, `Idle  BGP
    /// Error: Bad peer AS`), for the operator.
    pub info: String,
    /// lbd's addresses the session exports (BIRD's `show route exported`
    /// of lbd's protocols): empty when it is not Established, or when its
    /// export filter lets none of lbd's routes through.
    pub exports: Vec<IpAddr>,
}

/// A BGP session from one line of `show protocols` (codes stripped):
/// `Name Proto Table State Since Info...`. Lines of other protocols, the
/// header and anything unreadable give None. The Since column may be one
/// word or two (BIRD's `timeformat protocol`), so the info starts at the
/// first word after the state that does not start with a digit.
pub(crate) fn parse_protocol_line(line: &str) -> Option<BgpSession> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (name, proto, state) = (words.first()?, words.get(1)?, words.get(3)?);
    if *proto != BGP_PROTO {
        return None;
    }
    let info: Vec<&str> = words
        .iter()
        .skip(4)
        .skip_while(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .copied()
        .collect();
    Some(BgpSession {
        name: (*name).to_owned(),
        established: *state == STATE_UP,
        info: info.join(" "),
        exports: Vec::new(),
    })
}

/// The BGP sessions of a `show protocols` listing (its lines, codes
/// stripped), in BIRD's order.
pub(crate) fn parse_protocols(lines: &[String]) -> Vec<BgpSession> {
    lines
        .iter()
        .filter_map(|line| parse_protocol_line(line))
        .collect()
}

/// The addresses of the routes a `show route` listing names (its lines,
/// codes stripped): a route line starts with its prefix
/// (`198.18.0.100/32  blackhole [lbd_vips4 ...] * (200)`); `Table
/// master4:` and a route's further lines do not.
pub(crate) fn parse_routes(lines: &[String]) -> BTreeSet<IpAddr> {
    lines
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|word| word.split_once('/'))
        .filter_map(|(address, _)| address.parse().ok())
        .collect()
}

/// How many of `sessions` are Established and export `address`.
pub(crate) fn exporting(sessions: &[BgpSession], address: IpAddr) -> u32 {
    let count = sessions
        .iter()
        .filter(|session| session.established && session.exports.contains(&address))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// BIRD's symbol for `name` in a command: quoted (`'name'`), so any name
/// BIRD listed reads as that protocol's. None for a name a quote cannot
/// hold.
pub(crate) fn quoted(name: &str) -> Option<String> {
    (!name.contains('\'') && !name.contains('\n')).then(|| format!("'{name}'"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Debian bird2 2.0.12's `show protocols` (codes and continuation
    /// spaces stripped, as lbd reads it) on a node with a session that is
    /// Established and exports lbd's routes (`good_v4`), one Established
    /// whose export filter names `lbd_vips` (`badfilter_v4`), one whose
    /// neighbour AS is mistyped (`wrongas_v4`) and one whose neighbour does
    /// not answer (`noneighbor_v4`).
    pub(crate) const SHOW_PROTOCOLS: &str = "\
2002-Name       Proto      Table      State  Since         Info
1002-lbd_vips4  Static     master4    up     16:48:55.115  
 lbd_vips6  Static     master6    up     16:48:55.115  
 device1    Device     ---        up     16:48:55.115  
 good_v4    BGP        ---        up     16:48:56.088  Established   
 badfilter_v4 BGP        ---        up     16:49:14.156  Established   
 wrongas_v4 BGP        ---        start  16:50:26.263  Idle          BGP Error: Bad peer AS
 noneighbor_v4 BGP        ---        start  16:50:24.948  Active        Socket: Connection refused
0000 
";

    /// The same BIRD's `show route exported 'good_v4' protocol
    /// 'lbd_vips4'`.
    pub(crate) const GOOD_EXPORTS: &str = "\
1007-Table master4:
 198.18.0.101/32      blackhole [lbd_vips4 16:48:55.115] * (200)
 198.18.0.100/32      blackhole [lbd_vips4 16:48:55.115] * (200)
0000 
";

    /// A reply's lines as lbd's reader hands them over: the code and its
    /// separator, or the continuation space, stripped; the final line
    /// (empty text here) left out.
    pub(crate) fn lines(reply: &str) -> Vec<String> {
        reply
            .lines()
            .filter(|line| !line.starts_with("0000"))
            .map(|line| {
                let bytes = line.as_bytes();
                if bytes.len() > 4
                    && bytes[..4].iter().all(u8::is_ascii_digit)
                    && matches!(bytes[4], b'-' | b' ')
                {
                    line[5..].to_owned()
                } else {
                    line.get(1..).unwrap_or("").to_owned()
                }
            })
            .collect()
    }

    #[test]
    fn bgp_sessions_and_their_state_are_read_from_show_protocols() {
        let sessions = parse_protocols(&lines(SHOW_PROTOCOLS));
        let summary: Vec<(&str, bool, &str)> = sessions
            .iter()
            .map(|s| (s.name.as_str(), s.established, s.info.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("good_v4", true, "Established"),
                ("badfilter_v4", true, "Established"),
                ("wrongas_v4", false, "Idle BGP Error: Bad peer AS"),
                ("noneighbor_v4", false, "Active Socket: Connection refused"),
            ]
        );
    }

    /// `timeformat protocol iso long` makes Since two words.
    #[test]
    fn a_two_word_since_column_is_not_taken_for_the_info() {
        let session =
            parse_protocol_line("r1 BGP --- start 2026-11-28 16:50:24  Active  Socket: x")
                .expect("a BGP line");
        assert!(!session.established);
        assert_eq!(session.info, "Active Socket: x");
        assert_eq!(
            parse_protocol_line("Name Proto Table State Since Info"),
            None
        );
        assert_eq!(parse_protocol_line(""), None);
    }

    #[test]
    fn the_addresses_exported_are_read_from_show_route() {
        let exported = parse_routes(&lines(GOOD_EXPORTS));
        let want: BTreeSet<IpAddr> = ["198.18.0.100", "198.18.0.101"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(exported, want);
        let v6 = parse_routes(&[
            "Table master6:".to_owned(),
            "2001:2::100/128      blackhole [lbd_vips6 16:48:55.115] * (200)".to_owned(),
        ]);
        assert_eq!(v6, ["2001:2::100".parse().unwrap()].into());
        assert!(parse_routes(&lines("0000 \n")).is_empty());
    }

    /// Only an Established session that exports the address counts.
    #[test]
    fn an_address_counts_the_established_sessions_exporting_it() {
        let a: IpAddr = "198.18.0.100".parse().unwrap();
        let mut sessions = parse_protocols(&lines(SHOW_PROTOCOLS));
        assert_eq!(exporting(&sessions, a), 0);
        sessions[0].exports = parse_routes(&lines(GOOD_EXPORTS)).into_iter().collect();
        assert_eq!(exporting(&sessions, a), 1);
        // A session that is down exports nothing, whatever it last sent.
        sessions[3].exports = vec![a];
        assert_eq!(exporting(&sessions, a), 1);
    }

    #[test]
    fn names_are_quoted_as_birds_symbols() {
        assert_eq!(quoted("good_v4").as_deref(), Some("'good_v4'"));
        assert_eq!(quoted("a'b"), None);
    }
}
