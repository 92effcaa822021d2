//! The console's pages, each rendered from what the API reads: the alert service
//! (incidents, alerts, silences), the store (executions, journals, the audit log,
//! detections and forecasts) and `ops` (status, audit queries). A button shows only
//! when the session's role may do what it does, and the server checks again.

mod automation;
mod detectors;
mod executions;
mod incidents;
mod silences;

pub(super) use automation::*;
pub(super) use detectors::*;
pub(super) use executions::*;
pub(super) use incidents::*;
pub(super) use silences::*;

use super::graph::{self, Node};
use super::html::{Nav, badge, button, csrf, esc, json_block, page, seg, span, time};
use super::plot;
use super::session::Session;
use super::{Form, html_type, problem};
use crate::api::principals::{allows, need};
use crate::api::{Api, ApiError};
use crate::ops::{self, AuditQuery};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use vigil_alert::{Incident, IncidentStatus, Role as MemberRole, Silence};
use vigil_core::audit::AuditAction;
use vigil_exec::record::{
    AuditEntry, Event, EventKind, ExecStatus, ExecutionRecord, ExecutionStore,
};
use vigil_runtime::store::DetectorStore;

fn html(title: &str, nav: Nav, s: &Session, main_attrs: &str, body: &str) -> Response {
    (
        StatusCode::OK,
        html_type(),
        page(title, nav, Some(s), main_attrs, body),
    )
        .into_response()
}

/// Whether the session's role may post to `path` (the API route of the same name).
fn can(s: &Session, path: &str) -> bool {
    allows(s.caller.role, need(&Method::POST, path))
}

/// An API error as a page with its status.
async fn failed(e: ApiError, s: &Session) -> Response {
    super::refused_page(e.into_response(), Some(s)).await
}

fn status_badge(status: &str) -> String {
    badge(&format!("st-{status}"), status)
}

fn severity_badge(sev: &str) -> String {
    let class = match vigil_alert::severity_rank(sev) {
        5 | 4 => "sev-critical",
        3 => "sev-warning",
        _ => "sev-info",
    };
    badge(class, sev)
}

fn exec_link(id: &str) -> String {
    format!(
        "<a href=\"/console/executions/{}\"><code>{}</code></a>",
        seg(id),
        esc(id)
    )
}

fn incident_link(id: &str) -> String {
    format!(
        "<a href=\"/console/incidents/{}\"><code>{}</code></a>",
        seg(id),
        esc(id)
    )
}
