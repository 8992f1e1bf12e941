//! Traps the VM when a request carries `x-barbican-test-trap`, like the proxy-wasm SDK's
//! unwrap on a non-UTF-8 header value did to Barbican (issue #14); passes every other request.
//! Stands in for any defect that kills the VM, so the tests can measure the failure policy
//! itself rather than one bug.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trap))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Trap;
impl Context for Trap {}
impl HttpContext for Trap {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header("x-barbican-test-trap").is_some() {
            // A trap, as a panic is with panic = "abort".
            std::process::abort();
        }
        Action::Continue
    }
}
