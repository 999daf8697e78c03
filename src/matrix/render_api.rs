//! The matrix for any API as text: a row per client, a column per deployment, each cell's
//! verdict and calls; then what went wrong in each cell that is not ok, and the verdict.

use super::any_api::{ApiCell, ApiMatrix};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use compat::replay::Verdict;

impl ApiMatrix {
    /// The worst verdict of the judged cells.
    pub fn verdict(&self) -> Verdict {
        self.cells
            .iter()
            .filter(|c| c.judged)
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Inconclusive)
    }

    /// 0 every judged cell ok; 100 one broken or degraded; 3 one inconclusive and none worse
    /// (0 with `allow_inconclusive`).
    pub fn exit_code(&self, allow_inconclusive: bool) -> i32 {
        self.verdict().exit_code(allow_inconclusive)
    }

    /// The table, the details and the verdict.
    pub fn render(&self) -> String {
        let mut columns: Vec<&str> = Vec::new();
        let mut rows: Vec<&str> = Vec::new();
        for cell in &self.cells {
            if !columns.contains(&cell.deployment.as_str()) {
                columns.push(&cell.deployment);
            }
            if !rows.contains(&cell.client.as_str()) {
                rows.push(&cell.client);
            }
        }
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .force_no_tty()
            .set_header(std::iter::once("client").chain(columns.iter().copied()));
        let find = |row: &str, column: &str| {
            self.cells
                .iter()
                .find(|c| c.client == row && c.deployment == column)
        };
        for row in &rows {
            let mut line = vec![row.to_string()];
            for column in &columns {
                line.push(find(row, column).map_or("–".to_string(), shown));
            }
            table.add_row(line);
        }
        let mut out = format!(
            "matrix of OLD {} and NEW {}: each client's traffic through a gateway, compared with its own version's server\n{table}\n",
            self.old, self.new
        );
        for cell in self.cells.iter().filter(|c| c.verdict != Verdict::Ok) {
            out.push_str(&format!(
                "{} × {}{}: {}\n",
                cell.client,
                cell.deployment,
                if cell.judged { "" } else { " (not judged)" },
                cell.reason
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        let judged = self.cells.iter().filter(|c| c.judged).count();
        let ok = self
            .cells
            .iter()
            .filter(|c| c.judged && c.verdict == Verdict::Ok)
            .count();
        out.push_str(&match self.verdict() {
            Verdict::Ok => format!("every client is served as its own version serves it ({ok} of {judged} cells ok)\n"),
            verdict => format!(
                "{} of {judged} judged cells are not ok (the worst {verdict}): some clients are not served as their own version serves them\n",
                judged - ok
            ),
        });
        out
    }
}

fn shown(cell: &ApiCell) -> String {
    let judged = if cell.judged { "" } else { " (not judged)" };
    format!("{} ({} calls){judged}", cell.verdict, cell.sent)
}
