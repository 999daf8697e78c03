//! The page's API section: each version's services, methods and messages with the protos'
//! comments, and the changelog from v1 to v2 with its verdict.

use super::{esc, items, text};
use serde_json::Value;
use std::fmt::Write as _;

/// The API's versions (services, methods, messages, with the protos' comments) and the
/// changelog from v1 to v2 with its verdict.
pub(super) fn api(page: &mut String, api: &Value) {
    page.push_str("<section id=\"api\"><h2>The API</h2>\n");
    let changelog = &api["changelog"];
    let verdict = text(&changelog["verdict"]);
    let _ = writeln!(
        page,
        "<h3>Changelog v1 → v2: {} (testbed check)</h3><table><tr><th>element</th><th>rule</th>\
         <th>bump</th><th>what changed</th></tr>",
        esc(if verdict.is_empty() {
            "no change"
        } else {
            verdict
        })
    );
    for finding in items(&changelog["findings"]) {
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(text(&finding["element"])),
            esc(text(&finding["rule"])),
            esc(text(&finding["semver"])),
            esc(text(&finding["message"])),
        );
    }
    page.push_str("</table>\n");
    for version in items(&api["versions"]) {
        let _ = writeln!(
            page,
            "<h3><code>{}</code></h3>",
            esc(text(&version["package"]))
        );
        for service in items(&version["services"]) {
            let _ = writeln!(
                page,
                "<p><b>service <code>{}</code></b> {}</p><ul>",
                esc(text(&service["name"])),
                esc(text(&service["comment"]))
            );
            for method in items(&service["methods"]) {
                let _ = writeln!(
                    page,
                    "<li><code>{}</code> {}</li>",
                    esc(text(&method["signature"])),
                    esc(text(&method["comment"]))
                );
            }
            page.push_str("</ul>\n");
        }
        for message in items(&version["messages"]) {
            let _ = writeln!(
                page,
                "<p><b>message <code>{}</code></b> {}</p><table><tr><th>field</th><th>number</th>\
                 <th>type</th><th>comment</th></tr>",
                esc(text(&message["name"])),
                esc(text(&message["comment"]))
            );
            for field in items(&message["fields"]) {
                let _ = writeln!(
                    page,
                    "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td><code>{}</code></td>\
                     <td>{}</td></tr>",
                    esc(text(&field["name"])),
                    field["number"],
                    esc(text(&field["kind"])),
                    esc(text(&field["comment"]))
                );
            }
            page.push_str("</table>\n");
        }
    }
    page.push_str("</section>\n");
}
