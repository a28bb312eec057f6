//! The browser client's files, served at `/` from `--web-dir` next to the API.

use reqwest::StatusCode;

use crate::helpers::spawn_app_with;

/// A built client: an index page, a hashed asset with its gzip twin, and a file at the root.
fn built_client() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, bytes: &[u8]| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    };
    write("index.html", b"<!doctype html><title>Natter</title><div id=app></div>");
    write("assets/index-abc123.js", b"console.log('natter')");
    write("favicon.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>");
    let mut gz = Vec::new();
    {
        use std::io::Write;
        // A stored (uncompressed) gzip member is enough to tell the precompressed file was chosen.
        let body = b"console.log('natter')";
        gz.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]).expect("header");
        gz.write_all(&[1]).expect("final stored block");
        let len = u16::try_from(body.len()).expect("short");
        gz.write_all(&len.to_le_bytes()).expect("len");
        gz.write_all(&(!len).to_le_bytes()).expect("nlen");
        gz.write_all(body).expect("body");
        gz.write_all(&[0; 8]).expect("trailer (unchecked here)");
    }
    write("assets/index-abc123.js.gz", &gz);
    dir
}

#[tokio::test]
async fn the_client_is_served_with_its_api_on_one_origin() {
    let dir = built_client();
    let app = spawn_app_with(&["--web-dir", dir.path().to_str().expect("utf-8 path")]).await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.base)).send();

    let index = get("/").await.expect("request");
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(
        index.headers()["cache-control"],
        "no-cache",
        "the page is revalidated on every load"
    );
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    assert!(index.text().await.expect("text").contains("<title>Natter</title>"));

    let asset = get("/assets/index-abc123.js").await.expect("request");
    assert_eq!(asset.status(), StatusCode::OK);
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .contains("javascript")
    );
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );

    let gzipped = app
        .http
        .get(format!("{}/assets/index-abc123.js", app.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(
        gzipped.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );

    // A client route (a shared link, a reload in a room) opens the app.
    let route = get("/r/abcdef123456").await.expect("request");
    assert_eq!(route.status(), StatusCode::OK);
    assert!(route.text().await.expect("text").contains("<title>Natter</title>"));
    assert_eq!(get("/favicon.svg").await.expect("request").status(), StatusCode::OK);

    // What is not there stays an API-style 404, and the API is untouched.
    for path in ["/missing.png", "/api/nope", "/assets/gone-1234.js", "/../Cargo.toml"] {
        let reply = get(path).await.expect("request");
        assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = reply.json().await.expect("JSON error body");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let post = app.http.post(format!("{}/", app.base)).send().await.expect("request");
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/healthz").await.expect("request").status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_web_dir_the_api_serves_no_page() {
    let app = spawn_app_with(&[]).await;
    let reply = app.get("/", None).await;
    reply.assert_error(404, "not_found");
}
