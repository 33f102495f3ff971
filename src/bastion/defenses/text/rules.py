"""The rule layer of the text guard: known prompt-injection phrasings, as data.

Each :class:`Rule` is one regular expression for one way of attacking a model through its input:
overriding its instructions, switching it into an unrestricted persona, extracting its system prompt, or
forging the markup that separates roles. :func:`match_rules` runs every rule on every view that
:func:`~bastion.defenses.text.normalize.normalize` exposed, so an instruction hidden in Base64 or behind
zero-width characters is matched like a plain one.

Precision comes from the shape of the patterns, not from a list of exceptions: a verb must be followed,
within a few words, by the object an attack needs ("ignore" + "previous" + "instructions", not "ignore the
noise"); every gap is bounded (``\\W+(?:\\w+\\W+){0,3}?``) and no pattern has an unbounded ``.*``, so
matching stays linear in the length of the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.defenses.text.findings import PROMPT_CATEGORIES, Finding, quote
from bastion.defenses.text.normalize import TextView


@dataclass(frozen=True)
class Rule:
    """One injection phrasing.

    Attributes:
        id (str): stable identifier, ``"<family>.<name>"`` (``"override.ignore-previous"``).
        category (str): one of :data:`~bastion.defenses.text.findings.PROMPT_CATEGORIES`.
        pattern (re.Pattern[str]): compiled, case-insensitive unless a group says ``(?-i:...)``.
        reason (str): one sentence for a person: what the text tries to do.
        needs (tuple[str, ...]): lowercase words, one of which every match contains (``()``: none known). An
            ASCII text holding none of them is not searched: most rules then cost a substring test.
    """

    id: str
    category: str
    pattern: re.Pattern[str]
    reason: str
    needs: tuple[str, ...] = ()


def _rule(rule_id: str, category: str, reason: str, *alternatives: str, needs: tuple[str, ...]) -> Rule:
    """A :class:`Rule` whose pattern matches any of ``alternatives`` (verbose regex, case-insensitive); every
    match holds one of ``needs`` (lowercase), whichever alternative it comes from."""
    if category not in PROMPT_CATEGORIES:
        raise ValueError(f"rule {rule_id}: unknown category {category!r}; use one of {PROMPT_CATEGORIES}")
    if any(word != word.lower() or not word for word in needs):
        raise ValueError(f"rule {rule_id}: needs must be non-empty lowercase strings, got {needs}")
    pattern = "|".join(f"(?:{alternative})" for alternative in alternatives)
    return Rule(rule_id, category, re.compile(pattern, re.IGNORECASE | re.VERBOSE), reason, needs)


def _any(*words: str, guard: str = "") -> str:
    """``(?:word|word|...)`` behind a lookahead on the words' first letters (then ``guard``, an assertion).

    The lookahead is what keeps the rules fast: at most positions of a text one character test fails and the
    engine moves on, instead of trying every word.
    """
    if not all(word[:1].isalpha() for word in words):
        raise ValueError(f"_any() takes words that start with a letter, got {words}")
    firsts = "".join(sorted({word[0].lower() for word in words}))
    return f"(?=[{firsts}]){guard}(?:{'|'.join(words)})"


# Building blocks. Gaps are bounded; "\W+(?:\w+\W+){0,3}?" is "then up to three words". No part that can
# match non-word characters follows another such part without a word in between, so nothing backtracks
# quadratically over a long run of punctuation or spaces.
_UP_TO_2 = r"\W+(?:\w+\W+){0,2}?"
_UP_TO_3 = r"\W+(?:\w+\W+){0,3}?"
# "Never ignore safety rules" is advice, not an attack: the word before is a negation on the same line ("say no"
# on one line does not negate "repeat everything above" on the next), and "why not reveal ..." still asks.
_NOT_NEGATED = (r"(?:(?<=\bwhy[ \t]not[ \t])|(?<!\bnot[ \t]))(?<!n't[ \t])(?<!\bnever[ \t])(?<!\bno[ \t])")
_DISMISS = ("ignore", "disregard", "forget", "override", "bypass", "discard", "overlook", "abandon", r"set\W+aside",
            r"throw\W+out")
_NOT_JUST_DISMISS = r"(?<!override)(?<!bypass)(?<!overlook)(?<!abandon)(?<!aside)(?<!out)"  # "override all rules"
_EARLIER = r"(?:previous|previously|prior|above|earlier|preceding|foregoing|original|initial|system|developer|safety)"
_ORDERS = (r"(?:instructions?|rules|prompts?|directives?|guidelines|guardrails|commands|constraints|restrictions"
           r"|programming|orders|policies|directions|guidance)")
_OWN_ORDERS = r"(?:instructions?|rules|directives?|guidelines|guardrails|programming)"
_LIMITS = (r"(?:restrictions|restricted|filters|filtered|filtering|limits|limitations|rules|guidelines|censorship"
           r"|censored|boundaries|constraints|morals|morality|ethics|safeguards|guardrails|policies)")
_FREE_OF = (r"(?:no\W+longer\W+bound\W+by|not\W+bound\W+by|unbound\W+by|without(?:\W+any)?|free\W+(?:of|from)"
            r"|with\W+no|no|zero)")
_REVEAL = ("reveal", "print", "repeat", "show", "display", "output", "tell", "give", "share", "dump", "leak",
           "disclose", "expose", r"spell\W+out", "recite", "paste", "provide", "return", "echo", r"read\W+back",
           r"write\W+(?:out|down)", "list")
_FILLER = r"(?:(?:me|us|back|out|all|verbatim|exactly|word\W+for\W+word|of)\W+){0,3}"
_SECRET_KIND = r"(?:system|hidden|secret|confidential|pre-?)"
_PROMPT_NOUN = r"(?:prompt|instructions|directives)"
_ABOVE = r"(?:above|before\W+(?:this|that|my)|preceding|prior\W+to\W+(?:this|my))"
# At the start of the text, a line or a sentence, after at most a few quote, bullet or space characters.
_SENTENCE_START = r"(?:^|[.!?:;\n])[ \t\"'*_>-]{0,8}"
_TRIPLE_QUOTE = "(?:\"\"\"|''')"

# Words that declare instructions cancelled ("your directives are void", "... have been revoked").
_VOID_VERB = r"(?:are|is|were|was|have\W+been|has\W+been|'re|'s|become)"
# Not "expired", "lifted" or "suspended": said of insurance policies and account restrictions.
_VOID = (r"(?:void|revoked|cancell?ed|withdrawn|rescinded|superseded|obsolete|invalid|null"
         r"|overridden|overruled|annulled|no\W+longer\W+(?:valid|apply|applies|in\W+(?:force|effect)|active))")
_RELATIVE = r"(?:grand(?:ma|mother|pa|father|dad)|granny|nana|nan|gran|grampa|grandparents?)"

# Openings, as lookahead-guarded alternations (built here: an f-string expression cannot hold a backslash).
_STOP = _any(r"do\W+not", "don't", "dont", "never", "stop", r"no\W+longer", r"cease\W+to", r"refuse\W+to")
_NAMED = _any(r"you\W+are", "you're", r"act\W+as", r"pretend\W+to\W+be", "become", "called", "named", "play")
_PRETEND = _any("pretend", r"act\W+as", r"acting\W+as", r"role-?play\W+as", r"behave\W+(?:as|like)", "simulate",
                r"imagine\W+(?:that\W+)?you\W+are")
_ENTER = _any(r"you\W+are", "you're", r"act\W+as", r"acting\W+as", "simulate", "enable", "enter", "activate")
_BECOME = _any(r"you\W+are", "you're", r"act\W+as", "be", "become", "play", "as")
_INSIST = _any(r"you\W+(?:must|will|should|need\W+to|have\W+to)", "please", "always", r"remember\W+to")
_PLAY_AS = _any(r"act\W+as", r"pretend\W+(?:to\W+be|you\W+are)", r"role-?play\W+as", "be", "become", "play",
                "impersonate", r"speak\W+as", r"talk\W+(?:to\W+me\W+)?(?:as|like)")
# Requests to reveal, not "must never reveal its system prompt" (a requirement, said of a bot being built).
_REVEAL_ASKED = _any(*_REVEAL, guard=_NOT_NEGATED)
_REPEAT = _any("repeat", "print", "output", "recite", "echo", "reproduce", "show", "display", r"write\W+out",
               r"spell\W+out", "dump", guard=_NOT_NEGATED)

RULES: tuple[Rule, ...] = (
    # --- instruction-override ----------------------------------------------------------------------------
    _rule("override.ignore-previous", "instruction-override",
          "Tells the model to set aside the instructions it was given.",
          rf"""\b{_any(*_DISMISS, guard=_NOT_NEGATED)}
              (?:{_UP_TO_3}{_EARLIER}{_UP_TO_2}{_ORDERS}\b
              |{_NOT_JUST_DISMISS}\W+(?:all|any|every|your)\W+(?:\w+\W+)?{_OWN_ORDERS}\b
              |{_UP_TO_2}{_ORDERS}{_UP_TO_2}(?:above|before|earlier|previously|so\W+far|until\W+now
                 |you\W+(?:were|have\W+been)\W+given)\b
              |\W+(?:all\W+(?:of\W+)?)?the\W+above\W+(?:and|then)\W+(?:instead|now|just|tell|print|say|write
                 |output|reveal|respond|answer|repeat)\b)""",
          needs=("ignore", "disregard", "forget", "override", "bypass", "discard", "overlook", "abandon", "aside",
                 "throw")),
    _rule("override.forget-everything", "instruction-override",
          "Tells the model to forget what it was told before.",
          rf"""\b{_any("forget", "disregard", "ignore")}\W+(?:about\W+)?(?:everything|anything|whatever)\W+
              (?:(?:that\W+)?you\W+(?:were|have\W+been|'ve\W+been|got)\W+(?:told|given|taught|instructed)
               |(?:I\W+(?:said|wrote|told\W+you)\W+)?(?:above|before|earlier|previously|so\W+far|until\W+now))\b""",
          needs=("forget", "disregard", "ignore")),
    _rule("override.new-instructions", "instruction-override",
          "Announces replacement instructions for the model.",
          rf"""\b{_any("new", "updated", "revised", "real", "actual", "true", "additional", "secret", "hidden")}
              \W+(?:system\W+)?(?:instructions|directives|system\W+prompt)[ \t]*:""",
          r"\byour\W+(?:new|real|actual|true)\W+(?:instructions|directives?|objective)\W+(?:is|are)\b",
          needs=("instructions", "directive", "prompt", "objective")),
    _rule("override.from-now-on", "instruction-override",
          "Redefines how the model must behave for the rest of the conversation.",
          r"""\bfrom\W+now\W+on\W+(?:\w+\W+)?you\W+
              (?:(?:will|must|shall|should|are\W+(?:going\W+)?to|have\W+to|need\W+to|'ll)\W+(?:\w+\W+){0,2}?
                 (?:act|respond|answer|reply|ignore|obey|follow|behave|pretend|speak|output|comply|refuse
                 |disregard|only|always|never)\b
              |(?:are|will\W+be)\W+(?:now\W+)?(?:(?-i:DAN)\b|no\W+longer|not\W+bound|free\W+(?:of|from)
                 |an?\W+(?:unrestricted|unfiltered|uncensored|evil|jailbroken)))""",
          needs=("now",)),
    _rule("override.do-not-follow", "instruction-override",
          "Tells the model to stop following its guidelines.",
          rf"""\b{_STOP}
              \W+(?:\w+\W+)??(?:follow(?:ing)?|obey(?:ing)?|adher(?:e|ing)\W+to|compl(?:y|ying)\W+with
              |abid(?:e|ing)\W+by|respect(?:ing)?|listen(?:ing)?\W+to)\W+(?:\w+\W+)??
              (?:your|its|the\W+(?:system|safety|developer)|openai's|anthropic's|the\W+developer's)\W+(?:\w+\W+)??
              (?:{_ORDERS}|training|filters|principles|ethics|safety\W+\w+|content\W+polic(?:y|ies))\b""",
          needs=("follow", "obey", "adher", "compl", "abid", "respect", "listen")),
    _rule("override.void-orders", "instruction-override",
          "Declares the model's instructions cancelled, so that the text's own take their place.",
          rf"""\byour\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+(?:\w+\W+){{0,3}}?{_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          rf"""\bthe\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+(?:that\W+)?you\W+(?:received|were\W+given|got|were\W+set\W+up
              \W+with)\W+(?:\w+\W+){{0,2}}?{_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          rf"""\b{_any("consider", "treat", "regard")}\W+(?:all\W+)?your\W+(?:\w+\W+){{0,2}}?{_ORDERS}\W+
              (?:as\W+)?{_VOID}\b""",
          rf"""\beverything\W+you\W+(?:were|have\W+been)\W+(?:set\W+up\W+with|told|given|taught)\W+
              {_VOID_VERB}\W+(?:\w+\W+){{0,2}}?{_VOID}\b""",
          needs=("void", "revoked", "cancel", "withdrawn", "rescinded", "superseded", "obsolete", "invalid", "null",
                 "overridden", "overruled", "annulled", "longer")),
    # --- role-play ----------------------------------------------------------------------------------------
    _rule("roleplay.dan", "role-play",
          "Invokes the DAN ('do anything now') jailbreak persona.",
          r"(?=d)\bdo\W+anything\W+now\b",
          rf"""\b{_NAMED}\W+(?:now\W+)?(?:a\W+)?(?-i:DAN)\b""",
          r"(?=D)(?-i:\bDAN\b)(?:\W+(?:mode|prompt|jailbreak|persona)\b|\W+(?:\w+\W+){0,2}?stands\W+for\b)",
          needs=("anything", "dan")),
    _rule("roleplay.unrestricted", "role-play",
          "Tells the model it has no restrictions, filters or rules.",
          rf"\byou\W+are\W+(?:now\W+)?(?:\w+\W+){{0,4}}?{_FREE_OF}\W+(?:\w+\W+){{0,2}}?{_LIMITS}\b",
          rf"""\b{_PRETEND}
              \W+(?:\w+\W+){{0,6}}?{_FREE_OF}\W+(?:\w+\W+){{0,2}}?{_LIMITS}\b""",
          needs=("restrict", "filter", "limit", "rules", "guidelines", "censor", "boundaries", "constraints", "moral",
                 "ethics", "safeguards", "guardrails", "policies")),
    _rule("roleplay.developer-mode", "role-play",
          "Switches the model into a fictional unrestricted 'mode'.",
          rf"""\b{_any("jailbreak", "jailbroken", "DAN", "unrestricted", "unfiltered", "uncensored")}\W+mode\b""",
          rf"""\b{_ENTER}\W+(?:now\W+)?(?:\w+\W+){{0,3}}?(?:with|in|into)\W+(?:\w+\W+)?
              (?:developer|dev|god|jailbreak|DAN)\W+mode\b""",
          r"\bdeveloper\W+mode\W+(?:output|response)\b",
          needs=("mode",)),
    _rule("roleplay.jailbreak-persona", "role-play",
          "Casts the model as a jailbroken or amoral character.",
          rf"""\b{_BECOME}\W+(?:now\W+)?(?:an?\W+)?
              (?:completely\W+|totally\W+|fully\W+)?(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unaligned
              |unshackled|evil|rogue|unethical)\W+(?:\w+\W+)??(?:AI|assistant|chatbot|bot|model|version|character
              |persona|GPT|LLM)\b""",
          r"(?-i:\b(?:BetterDAN|AntiGPT|EvilBOT|DevMode|Mongo\W+Tom|DAN\W?\d+\.\d+)\b)",
          needs=("unrestricted", "unfiltered", "uncensored", "jailbroken", "amoral", "unaligned", "unshackled",
                 "evil", "rogue", "unethical", "dan", "antigpt", "devmode", "mongo")),
    _rule("roleplay.relative-persona", "role-play",
          "Asks the model to play the user's (late) grandparent, the frame of the 'grandma' jailbreak.",
          rf"""\b{_PLAY_AS}\W+(?:like\W+)?my\W+(?:(?:late|dead|deceased|departed|dear|sweet|beloved|old)\W+){{0,2}}{_RELATIVE}\b""",
          needs=("gran", "nan", "grampa")),
    _rule("roleplay.stay-in-character", "role-play",
          "Forbids the model to leave a persona, which is how jailbreak personas are held in place.",
          rf"""\b{_INSIST}
              \W+(?:stay|remain)\W+in\W+character\b""",
          rf"{_SENTENCE_START}(?:(?:stay|remain)\W+in|(?:never|do\W+not|don't)\W+break)\W+character\b",
          r"\byou\W+(?:must|will|should|may|can)\W*(?:not|never)\W+break\W+character\b",
          needs=("character",)),
    # --- prompt-extraction --------------------------------------------------------------------------------
    _rule("extraction.system-prompt", "prompt-extraction",
          "Asks the model to disclose its system prompt or hidden instructions.",
          rf"""\b{_REVEAL_ASKED}\W+{_FILLER}(?:your|the|its)\W+(?:\w+\W+){{0,2}}?
              (?:{_SECRET_KIND}\W*{_PROMPT_NOUN}s?|pre-?prompt)\b""",
          needs=("prompt", "instructions", "directives")),
    _rule("extraction.your-instructions", "prompt-extraction",
          "Asks the model to repeat the instructions it was given.",
          rf"""\b{_REVEAL_ASKED}\W+{_FILLER}(?:the\W+)?your\W+(?:\w+\W+){{0,2}}?(?:prompt|instructions|directives
              |programming|system\W+message|initial\W+\w+|original\W+\w+)\b""",
          r"""\bwhat\W+(?:is|are|was|were)\W+your\W+(?:\w+\W+)??(?:system\W+prompt|instructions|initial\W+prompt
              |prompt|directives|programming)\b""",
          needs=("your",)),
    _rule("extraction.what-were-you-told", "prompt-extraction",
          "Asks the model what it was told before the conversation.",
          r"""\bwhat\W+(?:were|have|had)\W+you\W+(?:been\W+)?(?:told|instructed|programmed|prompted)\b
              (?!\W+(?:about|by|at|in|on|when|yesterday|regarding|during)\b)""",
          r"""\bwhat\W+(?:are|were)\W+the\W+(?:\w+\W+)??(?:instructions|rules|directives)\W+you\W+
              (?:were|have\W+been|got)\W+(?:given|told)\b""",
          needs=("what",)),
    _rule("extraction.text-above", "prompt-extraction",
          "Asks the model to repeat the text that precedes the user's message, where its instructions are.",
          rf"""\b{_REPEAT}\W+
              (?:(?:(?:back|out|me|us|all|of)\W+){{0,3}}(?:everything|(?:the\W+)?(?:text|words|content|lines
                 |messages?|instructions|prompt|conversation))\W+(?:\w+\W+)??{_ABOVE}\b
                 (?!\W+(?:the|a|an|my|your|our|his|her|their)\b)
              |(?:\w+\W+){{0,6}}?(?:starting|beginning)\W+with\W+\W?(?:you\W+are|your\W+instructions|system)\b)""",
          needs=("above", "before", "preceding", "prior", "starting", "beginning")),
    # --- delimiter ----------------------------------------------------------------------------------------
    _rule("delimiter.chat-tokens", "delimiter",
          "Contains chat-template control tokens that forge a new system or assistant turn.",
          r"""<(?:\|[ \t]{0,3}(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id
              |end_header_id|begin_of_text|end_of_text|eom_id|start|end|message|channel)[ \t]{0,3}\|
              |(?:start|end)_of_turn)>""",
          needs=("<|", "_of_turn")),
    _rule("delimiter.llama-tokens", "delimiter",
          "Contains Llama-style instruction markers that forge a new turn.",
          r"(?-i:\[/?INST\])",
          r"<<[ \t]{0,3}/?[ \t]{0,3}SYS[ \t]{0,3}>>",
          r"</s>\s*(?:<s>|\[INST\]|<\|)",
          needs=("inst]", "sys", "</s>")),
    _rule("delimiter.role-header", "delimiter",
          "Forges a role header (### System:) so that what follows reads as the system's words.",
          r"""(?<![^\n])[ \t]{0,8}(?:\#{2,6}[ \t]{0,4}(?:system|assistant|developer|instruction)
              [ \t]{0,4}(?:prompt|message)?[ \t]{0,4}:
              |(?:system|assistant|developer)[ \t]{0,4}(?:prompt|message)?[ \t]{0,4}:[ \t]{0,4}
               (?:you\W+are|ignore|disregard|forget|new\W+instructions|from\W+now))""",
          needs=("system", "assistant", "developer", "instruction")),
    _rule("delimiter.end-of-input", "delimiter",
          "Declares the user's input over, so that what follows passes for trusted instructions.",
          r"""(?=E)(?-i:\bEND\W+OF\W+(?:USER\W+)?(?:INPUT|PROMPT|INSTRUCTIONS|CONTEXT|DOCUMENT|TEXT|MESSAGE|CONVERSATION
              |DATA|EMAIL|QUERY)\b)""",
          r"""[-=\#*_\[<(]{2,10}[ \t]{0,4}end[ \t]+of[ \t]+(?:the[ \t]+)?(?:input|prompt|context|instructions
              |user[ \t]+(?:input|prompt|message|query))\b""",
          rf"\b{_any('user', 'human')}\W+input\W+(?:ends|ended|is\W+over)\b",
          needs=("end", "input")),
    _rule("delimiter.fake-close", "delimiter",
          "Closes the quoted document early and continues with instructions outside it.",
          rf"""(?:</[ \t]{{0,3}}(?:document|doc|context|data|input|text|article|email|user_input|user|content
              |untrusted\w*|quote|source|retrieved\w*|search_results?|tool_output|function_results?|result|file
              |page)[ \t]{{0,3}}>
              |{_TRIPLE_QUOTE}[ \t]{{0,8}}\r?\n(?:[ \t]{{0,8}}\r?\n){{1,5}}|\[/(?:document|quote|input)\])
              [^\w@]{{0,40}}(?:(?:now|and|then|please|okay|ok)\W+){{0,2}}  # '@override' after a docstring is code
              (?:ignore|disregard|forget|override|new\W+instructions|system\W*:|you\W+must|from\W+now\W+on
              |your\W+(?:new|real|actual)\W+(?:task|instructions))\b""",
          needs=("</", '"""', "'''", "[/")),
    _rule("delimiter.system-tag", "delimiter",
          "Wraps text in a system tag so that it passes for the system's words.",
          r"<[ \t]{0,3}/?[ \t]{0,3}(?:system|sys|system_prompt|system-prompt|developer|instructions?|im_start)"
          r"[ \t]{0,3}>",
          needs=("sys", "developer", "instruction", "im_start")),
)


def match_rules(views: Sequence[TextView], *, rules: Sequence[Rule] = RULES, max_per_rule: int = 5) -> list[Finding]:
    """Every match of ``rules`` in ``views``, one :class:`Finding` each.

    Args:
        views (Sequence[TextView]): the views from :func:`~bastion.defenses.text.normalize.normalize`.
        rules (Sequence[Rule]): the rules to run (default :data:`RULES`).
        max_per_rule (int): the most findings one rule gives per view (default 5), so that a text repeating
            one phrase a million times gives a short report.

    Returns:
        list[Finding]: ``layer="rules"``, ``score=1.0``, ``path`` = the view's path, ``span`` within the view's
        text, ``evidence`` the matched text (quoted). The same rule matching the same words in a later view
        (a URL-decoded copy of the text, say) is reported once, for the first view.

    Raises:
        ValueError: ``max_per_rule`` is below 1.
    """
    if max_per_rule < 1:
        raise ValueError(f"max_per_rule must be >= 1, got {max_per_rule}")
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for view in views:
        # Needed words are looked up in ASCII texts only: there str.lower() and the pattern's case-insensitive
        # matching agree (elsewhere they may not: "\u0130".lower() is two characters).
        lowered = view.text.lower() if view.text.isascii() else None
        for rule in rules:
            if lowered is not None and rule.needs and not any(word in lowered for word in rule.needs):
                continue
            for count, match in enumerate(rule.pattern.finditer(view.text)):
                if count >= max_per_rule:
                    break
                key = (rule.id, " ".join(match.group().lower().split()))
                if key in seen:
                    continue
                seen.add(key)
                findings.append(Finding(
                    layer="rules", category=rule.category, rule=rule.id, reason=rule.reason,
                    evidence=quote(match.group()), path=list(view.path), span=match.span(), score=1.0))
    return findings
