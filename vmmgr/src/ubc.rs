//! `/proc/user_beancounters` as OpenVZ's kernel prints it (`Version: 2.5`,
//! its column widths, every resource row with the `dummy` ones): shown by
//! `vzctl ubc` on the appliance and as `/proc/user_beancounters` in a VE.

use proto::{UbcRow, UBC_NAMES, UBC_PRINTED};
use std::fmt::Write as _;

/// The file's text for the VEs in `blocks` (VEID and rows), in that order.
pub fn render(blocks: &[(u32, &[UbcRow])]) -> String {
    let mut out = String::from("Version: 2.5\n");
    let _ = writeln!(
        out,
        "{:>10}  {:<12} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for (veid, rows) in blocks {
        for (i, r) in rows.iter().take(UBC_PRINTED).enumerate() {
            let (id, sep) = if i == 0 {
                (veid.to_string(), ':')
            } else {
                (String::new(), ' ')
            };
            let _ = writeln!(
                out,
                "{id:>10}{sep} {:<12} {:>20} {:>20} {:>20} {:>20} {:>20}",
                UBC_NAMES[i], r.held, r.maxheld, r.barrier, r.limit, r.failcnt
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_openvz() {
        let mut rows = [UbcRow {
            barrier: proto::Ubc::UNLIMITED,
            limit: proto::Ubc::UNLIMITED,
            ..UbcRow::default()
        }; proto::UBC_COUNT];
        rows[0].held = 6_499_239;
        rows[0].maxheld = 34_332_672;
        rows[5].held = 53;
        rows[5].maxheld = 105;
        let t = render(&[(101, &rows)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Version: 2.5");
        assert_eq!(
            lines[1],
            "       uid  resource                     held              maxheld              barrier                limit              failcnt"
        );
        assert_eq!(
            lines[2],
            "       101: kmemsize                  6499239             34332672  9223372036854775807  9223372036854775807                    0"
        );
        assert_eq!(
            lines[6],
            "            dummy                           0                    0  9223372036854775807  9223372036854775807                    0"
        );
        assert!(lines[7]
            .starts_with("            numproc                        53                  105"));
        // 24 rows per VE (swappages is not in this file), dummies included.
        assert_eq!(lines.len(), 2 + 24);
        assert_eq!(
            lines.last().map(|l| l.split_whitespace().next()),
            Some(Some("numiptent"))
        );
    }
}
