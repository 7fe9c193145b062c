//! `kubus get` tables, with kubectl's columns.
//! (The columns and cells are `kubus_api::print`'s, shared with the API
//! gateway; this module lays them out as text.)

use kubus_api::Kind;
use serde_json::Value;

pub use kubus_api::print::*;

/// Render objects as a kubectl-style table.
pub fn table(
    kind: Kind,
    items: &[Value],
    with_namespace: bool,
    wide: bool,
    now: jiff::Timestamp,
) -> String {
    columns_text(&table_rows(kind, items, with_namespace, wide, now))
}

/// A table whose NAME column says the kind, as `kubectl get all` prints
/// each section: `deployment.apps/web`.
pub fn table_named(
    kind: Kind,
    items: &[Value],
    with_namespace: bool,
    wide: bool,
    now: jiff::Timestamp,
) -> String {
    let mut rows = table_rows(kind, items, with_namespace, wide, now);
    let at = usize::from(with_namespace);
    for r in rows.iter_mut().skip(1) {
        if let Some(cell) = r.get_mut(at) {
            *cell = crate::targets::display_name(kind, cell);
        }
    }
    columns_text(&rows)
}

/// Text aligned as Go's `text/tabwriter` aligns it with kubectl's
/// settings for `describe` and `rollout history` (minimum width 0,
/// padding 2, spaces): cells end at a tab, a line's text after its last
/// tab is in no column, and a column is as wide as its widest cell over
/// the run of adjacent lines that have a cell in it. Trailing spaces are
/// dropped.
pub fn tabbed(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    tab_format(&lines, &mut widths, &mut out, 0, lines.len());
    out
}

/// Padding between tabbed columns, as kubectl's tabwriters have it.
const TAB_PADDING: usize = 2;

/// Go's `tabwriter.(*Writer).format`: lines `line0..line1` with the column
/// widths found so far.
fn tab_format(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    out: &mut String,
    mut line0: usize,
    line1: usize,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // a column block begins: lines before it are done at this depth
        tab_write_lines(lines, widths, out, line0, this);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + TAB_PADDING);
            this += 1;
        }
        widths.push(width);
        tab_format(lines, widths, out, line0, this);
        widths.pop();
        line0 = this;
    }
    tab_write_lines(lines, widths, out, line0, line1);
}

fn tab_write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    out: &mut String,
    line0: usize,
    line1: usize,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        let start = out.len();
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j) {
                let pad = w.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end_matches(' ').len();
        out.truncate(start + kept);
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

/// Rows as kubectl aligns them: each column as wide as its widest cell,
/// three spaces apart, the last column unpadded.
pub fn columns_text(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_table_has_kubectl_columns() {
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().expect("ts");
        let pod = json!({"metadata": {"name": "web-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let t = table(Kind::Pod, &[pod], false, false, now);
        assert_eq!(
            t,
            "NAME    READY   STATUS    RESTARTS   AGE\nweb-x   1/1     Running   2          10s\n"
        );
    }

    /// Issue 5: a pod being deleted gracefully shows as kubectl shows it.
    #[test]
    fn tabbed_aligns_like_go_tabwriter() {
        let text = "Name:\tweb\nNamespace:\tdefault\nLabels:\tapp=web\n\tpod-template-hash=x\nAnnotations:\t<none>\n";
        assert_eq!(
            tabbed(text),
            "Name:         web\nNamespace:    default\nLabels:       app=web\n              pod-template-hash=x\nAnnotations:  <none>\n"
        );
        // a line without a tab ends the column block
        let text = "Pod Template:\n  Labels:\tapp=web\n  Containers:\n   main:\n    Image:\tbusybox\n    Port:\t<none>\n";
        assert_eq!(
            tabbed(text),
            "Pod Template:\n  Labels:  app=web\n  Containers:\n   main:\n    Image:  busybox\n    Port:   <none>\n"
        );
        // nested columns: each as wide as its own block
        let text = "  Type\tReason\tAge\n  ----\t------\t---\n  Normal\tScheduled\t5s\n";
        assert_eq!(
            tabbed(text),
            "  Type    Reason     Age\n  ----    ------     ---\n  Normal  Scheduled  5s\n"
        );
    }

    #[test]
    fn get_all_sections_name_the_kind() {
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().expect("ts");
        let d = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(
            table_named(Kind::Deployment, &[d], false, false, now),
            "NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\ndeployment.apps/web   2/2     2            2           10s\n"
        );
    }
}
