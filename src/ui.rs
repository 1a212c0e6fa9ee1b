//! The canvas (the web flow builder in `web/`), served at `/ui/` from the
//! directory `make web` builds (`[http] ui_dir`, `web/dist` by default).
//!
//! Files are read from disk on each request rather than embedded, so the
//! binary builds without Node.js and a rebuilt UI is picked up without a
//! restart. Any path that is not a file is the single-page app's own route
//! and gets `index.html`; when the UI was never built, `/ui/` says how to
//! build it instead of answering a bare 404.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// What a `/ui/...` request resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A file under the UI directory.
    File(PathBuf),
    /// The path is not a safe relative path.
    Forbidden,
    /// A missing hashed asset: a 404, never `index.html`, so a stale page
    /// fails loudly instead of parsing HTML as JavaScript.
    MissingAsset,
}

/// Why a file could not be served.
#[derive(Debug, thiserror::Error)]
enum UiError {
    #[error("the canvas is not built: {} has no index.html", dir.display())]
    NotBuilt { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The `/ui` routes over the built files in `dir`.
pub fn router(dir: PathBuf) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(serve))
        .route("/ui/{*path}", get(serve))
        .with_state(dir)
}

async fn serve(State(dir): State<PathBuf>, uri: Uri) -> Response {
    let rel = uri.path().strip_prefix("/ui/").unwrap_or("");
    let path = match resolve(&dir, rel) {
        Target::File(path) => path,
        Target::Forbidden => return StatusCode::FORBIDDEN.into_response(),
        Target::MissingAsset => return StatusCode::NOT_FOUND.into_response(),
    };
    match read(&dir, &path).await {
        Ok(bytes) => {
            let cache = if rel.starts_with("assets/") {
                // Vite puts a content hash in every asset name.
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type(&path)),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e @ UiError::NotBuilt { .. }) => {
            tracing::warn!("{e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                not_built_page(&dir),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!("ui: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Maps a request path (after `/ui/`) to what to serve. Pure: it only
/// looks at whether the file exists.
fn resolve(dir: &Path, rel: &str) -> Target {
    let mut path = dir.to_path_buf();
    for segment in rel.split('/').filter(|s| !s.is_empty()) {
        if segment == "."
            || segment == ".."
            || segment.contains('\\')
            || segment.contains('\0')
            || segment.contains(':')
        {
            return Target::Forbidden;
        }
        path.push(segment);
    }
    if path.is_file() {
        return Target::File(path);
    }
    if rel.starts_with("assets/") {
        return Target::MissingAsset;
    }
    Target::File(dir.join("index.html"))
}

async fn read(dir: &Path, path: &Path) -> Result<Vec<u8>, UiError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with("index.html") => {
            Err(UiError::NotBuilt {
                dir: dir.to_path_buf(),
            })
        }
        Err(source) => Err(UiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_built_page(dir: &Path) -> String {
    let dir = dir
        .display()
        .to_string()
        .replace('&', "&amp;")
        .replace('<', "&lt;");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>voxgate canvas not built</title></head><body>\
         <h1>The canvas is not built</h1>\
         <p>voxgate serves the flow builder from <code>{dir}</code>, which has no \
         <code>index.html</code>.</p>\
         <p>Build it with <code>make web</code> (runs <code>npm ci</code> and \
         <code>vite build</code> in <code>web/</code>), or point \
         <code>[http] ui_dir</code> (<code>VOXGATE_HTTP_UI_DIR</code>) at a built copy. \
         No restart is needed.</p></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("voxgate-ui-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("assets")).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn files_are_served_and_app_routes_fall_back_to_index() {
        let s = Scratch::new("resolve");
        std::fs::write(s.0.join("index.html"), "<html>").unwrap();
        std::fs::write(s.0.join("assets/app-1234.js"), "x").unwrap();
        assert_eq!(resolve(&s.0, ""), Target::File(s.0.join("index.html")));
        assert_eq!(
            resolve(&s.0, "assets/app-1234.js"),
            Target::File(s.0.join("assets/app-1234.js"))
        );
        assert_eq!(
            resolve(&s.0, "flows/acme/support"),
            Target::File(s.0.join("index.html"))
        );
        assert_eq!(resolve(&s.0, "assets/gone-9.js"), Target::MissingAsset);
    }

    #[test]
    fn paths_cannot_leave_the_ui_directory() {
        let s = Scratch::new("escape");
        assert_eq!(resolve(&s.0, "../Cargo.toml"), Target::Forbidden);
        assert_eq!(resolve(&s.0, "assets/../../x"), Target::Forbidden);
        assert_eq!(resolve(&s.0, "a\\..\\b"), Target::Forbidden);
        assert_eq!(resolve(&s.0, "C:/x"), Target::Forbidden);
    }

    #[tokio::test]
    async fn an_unbuilt_ui_says_how_to_build_it() {
        let s = Scratch::new("unbuilt");
        let Target::File(path) = resolve(&s.0, "") else {
            panic!("expected index.html");
        };
        let err = read(&s.0, &path).await.unwrap_err();
        assert!(matches!(err, UiError::NotBuilt { .. }), "{err}");
        assert!(not_built_page(&s.0).contains("make web"));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("x.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.woff2")), "font/woff2");
    }
}
