//! The dashboard's screen layout in rows: header, title bar, body and bottom line, and how many
//! rows of data each view's body holds. Views, the app and the renderer all read it from here.

use crate::ui::keys::View;

/// The header: daemon, user, connection, counts, $/h.
pub const HEADER_ROWS: u16 = 2;
/// The title bar above the body.
pub const TITLE_ROWS: u16 = 1;
/// The hint bar or the prompt.
pub const BOTTOM_ROWS: u16 = 1;
/// The details of the selected job, below the jobs table.
pub const DETAIL_ROWS: u16 = 4;
/// The offers query line, above the offers table.
pub const QUERY_ROWS: u16 = 1;

/// Rows of data (table rows, or log lines) that `view` has at terminal size `(cols, rows)`.
pub fn table_rows(view: View, (_, rows): (u16, u16)) -> usize {
    let body = rows.saturating_sub(HEADER_ROWS + TITLE_ROWS + BOTTOM_ROWS);
    let extra = match view {
        View::Logs => 0,
        View::Jobs => 1 + DETAIL_ROWS,
        View::Offers => 1 + QUERY_ROWS,
        View::Runs | View::Fleets | View::Events => 1,
    };
    usize::from(body.saturating_sub(extra))
}
