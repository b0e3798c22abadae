//! Why an origin's GRIP instructions were rejected. Each message is written for the origin's
//! developer: the server shows it in its log and, in debug mode, in the 502 body, so it names
//! the header or JSON field at fault and quotes the offending value.

use crate::params::ParamsError;

/// A GRIP instruction that cannot be followed. The `Display` text is the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructError {
    /// A `Grip-*` header value is not UTF-8.
    #[error("{header} header is not valid UTF-8")]
    NotUtf8 {
        /// The header, e.g. `Grip-Hold`.
        header: &'static str,
    },
    /// A `Grip-*` header does not follow the parameter grammar.
    #[error("invalid {header} header: {source}")]
    Params {
        /// The header, e.g. `Grip-Channel`.
        header: &'static str,
        /// What was wrong with it.
        #[source]
        source: ParamsError,
    },
    /// `Grip-Hold` is neither `response` nor `stream` (values are case-sensitive).
    #[error("Grip-Hold must be 'response' or 'stream', got '{got}'")]
    HoldMode {
        /// The value received.
        got: String,
    },
    /// A channel has an empty name.
    #[error("{location}: channel name is empty")]
    EmptyChannelName {
        /// `Grip-Channel element N` or `hold.channels[N]`.
        location: String,
    },
    /// A channel name contains a control character.
    #[error("{location}: channel name {name:?} contains a control character")]
    ChannelControlChar {
        /// `Grip-Channel element N` or `hold.channels[N]`.
        location: String,
        /// The name received.
        name: String,
    },
    /// A `prev-id` contains a control character (it is echoed later in `Grip-Last`).
    #[error("{location}: prev-id {prev_id:?} contains a control character")]
    PrevIdControlChar {
        /// `Grip-Channel element N` or `hold.channels[N]`.
        location: String,
        /// The prev-id received.
        prev_id: String,
    },
    /// A channel lists more filters than allowed.
    #[error("too many filters for channel '{channel}' ({count}, at most {max} allowed)")]
    TooManyFilters {
        /// The channel's name.
        channel: String,
        /// How many filters it listed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A stream hold gives a channel a `prev-id` but no `Grip-Link` with `rel=next`.
    #[error(
        "channel '{channel}' specifies prev-id, which a stream hold allows only with a \
         Grip-Link rel=next"
    )]
    PrevIdWithoutNextLink {
        /// The channel's name.
        channel: String,
    },
    /// A number of seconds is not a non-negative whole number.
    #[error("{field} must be a non-negative whole number of seconds, got '{got}'")]
    BadSeconds {
        /// `Grip-Timeout`, `Grip-Keep-Alive timeout` or `Grip-Link timeout`.
        field: &'static str,
        /// The value received.
        got: String,
    },
    /// `Grip-Keep-Alive` has no data, or its data decodes to nothing.
    #[error("Grip-Keep-Alive data must not be empty")]
    KeepAliveEmpty,
    /// `Grip-Keep-Alive` names an unknown `format`.
    #[error("Grip-Keep-Alive format must be 'raw', 'cstring' or 'base64', got '{got}'")]
    KeepAliveFormat {
        /// The value received.
        got: String,
    },
    /// `Grip-Keep-Alive` names an unknown `mode`.
    #[error("Grip-Keep-Alive mode must be 'idle' or 'interval', got '{got}'")]
    KeepAliveMode {
        /// The value received.
        got: String,
    },
    /// `Grip-Keep-Alive; format=base64` data is not base64.
    #[error("Grip-Keep-Alive data is not valid base64")]
    KeepAliveBase64,
    /// `Grip-Keep-Alive; format=cstring` data has a bad escape.
    #[error("Grip-Keep-Alive data is not a valid cstring: {0}")]
    KeepAliveCString(&'static str),
    /// [`super::decode_cstring`] found a bad escape.
    #[error("invalid cstring: {0}")]
    CString(&'static str),
    /// `Grip-Status` is not `<code> [reason]` with a usable code.
    #[error("Grip-Status must be '<code> [reason]' with a code from 200 to 999, got '{got}'")]
    StatusCode {
        /// The value received.
        got: String,
    },
    /// A reason phrase contains a control character other than tab.
    #[error("{field} reason phrase contains a control character")]
    ReasonControlChar {
        /// `Grip-Status` or `response.reason`.
        field: &'static str,
    },
    /// A `Grip-Link` element with parameters does not start with `<uri>`.
    #[error("Grip-Link must be '<uri>; rel=...', got '{got}'")]
    LinkValue {
        /// The first token received.
        got: String,
    },
    /// A `Grip-Link` URI contains whitespace or control characters.
    #[error("Grip-Link contains an invalid URI '{uri}'")]
    LinkUri {
        /// The URI received (between `<` and `>`).
        uri: String,
    },
    /// A `Grip-Set-Meta` list has a blank element.
    #[error("Grip-Set-Meta element {element} is empty")]
    SetMetaEmpty {
        /// 1-based element index across all `Grip-Set-Meta` lines.
        element: usize,
    },
    /// A `Grip-Set-Meta` element has no name before `=`.
    #[error("Grip-Set-Meta element {element} has an empty name")]
    SetMetaEmptyName {
        /// 1-based element index across all `Grip-Set-Meta` lines.
        element: usize,
    },
    /// `application/grip-instruct` content came with a status other than 200.
    #[error("application/grip-instruct content is only accepted with status 200, got {status}")]
    InstructStatus {
        /// The origin's status code.
        status: u16,
    },
    /// The `application/grip-instruct` body is larger than the limit.
    #[error("application/grip-instruct body is {len} bytes, over the limit of {max}")]
    BodyTooLarge {
        /// The body's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The `application/grip-instruct` body is not JSON.
    #[error("application/grip-instruct body is not valid JSON: {detail}")]
    Json {
        /// The JSON parser's explanation, with line and column.
        detail: String,
    },
    /// The `application/grip-instruct` body is JSON but not an object.
    #[error("application/grip-instruct body must be a JSON object")]
    JsonNotObject,
    /// A field of the `application/grip-instruct` body is missing or wrong.
    #[error("{path} {problem}")]
    JsonField {
        /// Where, e.g. `hold.channels[1].name`.
        path: String,
        /// What is wrong, e.g. `must be a string`.
        problem: String,
    },
}

impl InstructError {
    /// Shorthand for [`InstructError::JsonField`].
    pub(super) fn json(path: impl Into<String>, problem: impl Into<String>) -> Self {
        InstructError::JsonField {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
