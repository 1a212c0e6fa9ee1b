//! `voxgate call`: the softphone from the command line.

use voxgate_gateway::call::PlaybackSource;
use voxgate_gateway::codec::Codec;
use voxgate_gateway::dtmf::DtmfSource;
use voxgate_gateway::softphone::{self, CallOptions, CallSummary, Credentials, Disposition};

use crate::cli::{CallArgs, CodecArg, DtmfModeArg};
use crate::exit;

/// The options `voxgate call` builds from its flags.
pub fn options(args: &CallArgs) -> CallOptions {
    let mut o = CallOptions::new(args.target.clone());
    o.from = args.from.clone();
    o.play = args.play.clone().map(PlaybackSource::Wav);
    o.dtmf = args.dtmf.clone();
    o.dtmf_mode = match args.dtmf_mode {
        DtmfModeArg::Rfc4733 => DtmfSource::Rfc4733,
        DtmfModeArg::Info => DtmfSource::Info,
        DtmfModeArg::Inband => DtmfSource::Inband,
    };
    o.dtmf_delay = args.dtmf_delay;
    o.dtmf_duration = args.dtmf_duration;
    o.record = args.record.clone();
    o.hangup_after = args.hangup_after;
    o.credentials = match (&args.username, &args.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    };
    o.codec = match args.codec {
        CodecArg::Pcmu => Codec::Pcmu,
        CodecArg::Pcma => Codec::Pcma,
    };
    o.timeout = args.timeout;
    o.local_ip = args.local_ip;
    o
}

/// Places the call, prints the summary, and returns the exit code:
/// 0 answered, 1 rejected, 2 no answer in time, 70 the call failed.
pub async fn run(args: CallArgs) -> i32 {
    let json = args.json;
    match softphone::run(options(&args)).await {
        Ok(summary) => {
            print_summary(&summary, json);
            match summary.disposition {
                Disposition::Answered => exit::OK,
                Disposition::Rejected { .. } => exit::CALL_REJECTED,
                Disposition::Timeout => exit::CALL_TIMEOUT,
            }
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "target": args.target, "error": e.to_string() })
                );
            }
            eprintln!("voxgate call: {e}");
            exit::SOFTWARE
        }
    }
}

fn print_summary(s: &CallSummary, json: bool) {
    if json {
        match serde_json::to_string_pretty(s) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("voxgate call: cannot encode the summary: {e}"),
        }
        return;
    }
    let disposition = match &s.disposition {
        Disposition::Answered => "answered".to_owned(),
        Disposition::Rejected { code, reason } => format!("rejected {code} {reason}"),
        Disposition::Timeout => "no answer (timeout)".to_owned(),
    };
    println!("call {} -> {disposition}", s.target);
    println!("  responses: {:?}", s.responses);
    if s.answered() {
        println!(
            "  codec: {}  duration: {} ms  hangup: {:?}",
            s.codec.unwrap_or("?"),
            s.duration_ms,
            s.hangup_by
        );
        println!(
            "  rtp: sent {} received {} lost {} jitter {:.1} ms, {} non-silent frames",
            s.rtp.packets_sent,
            s.rtp.packets_received,
            s.rtp.packets_lost,
            s.rtp.jitter_ms,
            s.rtp.non_silent_frames_received
        );
        println!(
            "  dtmf sent: {:?} ({:?})  received: {:?}",
            s.dtmf_sent,
            s.dtmf_mode,
            s.received_digits()
        );
    }
}
