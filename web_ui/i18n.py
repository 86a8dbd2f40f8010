"""Portuguese (pt-BR, the default) and English for the customer's screens.

The code and the templates speak English (``_("Open an account")``); ``PT_BR`` gives the
Portuguese of each phrase. A phrase missing there falls back to English, and a unit test
checks that no phrase of a template or of this module is missing.
The language comes from a switch kept in the cookie session, else from the browser's
Accept-Language, else pt-BR.
"""
from __future__ import annotations

from flask import g, request, session

LANGS = ("pt-BR", "en")
DEFAULT_LANG = "pt-BR"


def pick_language() -> str:
    chosen = session.get("lang")
    if chosen in LANGS:
        return chosen
    best = request.accept_languages.best_match(["pt-BR", "pt", "en"], default=DEFAULT_LANG)
    return "en" if best == "en" else DEFAULT_LANG


def current_lang() -> str:
    return getattr(g, "lang", None) or DEFAULT_LANG


def translate(text: str, lang: str | None = None, **params: object) -> str:
    """The phrase in ``lang`` (default: this request's), with ``{placeholders}`` filled in.
    The result is plain text: Jinja escapes it, and any user content inside it, on output."""
    lang = lang or current_lang()
    phrase = PT_BR.get(text, text) if lang == "pt-BR" else text
    return phrase.format(**params) if params else phrase


_ = translate

# Why a leg or a transfer was refused, in a customer's words (codes from the participants'
# votes and the coordinator: bank_node.domain.participant / coordinator).
REASONS = {
    "insufficient_funds": "insufficient funds",
    "not_found": "account not found",
    "forbidden": "you are not a holder of this account",
    "account_closed": "account closed",
    "account_pending": "waiting for every holder to accept the account",
    "timeout": "the bank did not answer in time",
    "bank_unreachable": "the bank is out of reach right now",
    "refused": "refused by the bank",
    "coordinator_restarted": "interrupted by a restart of the bank; nothing was moved",
    "aborted": "cancelled",
    "error": "the bank could not process it",
    "amount_over_limit": "over this bank's limit per operation",
    "daily_limit_exceeded": "over the daily limit of this account",
    "duplicate_leg": "the same account was named twice in the transfer",
    "no_mandate": "this bank has no consent from the account's holder for debits started at another bank",
    "mandate_limit_exceeded": "over the limits the holder set for debits started at another bank",
    "peer_cap_exceeded": "the receiving bank will not take more from the paying bank for now",
    "unbalanced": "the amounts of the transfer do not add up",
    "not_one_credit": "a transfer has exactly one destination",
    "deadline_too_far": "refused by the bank",
    "id_in_use": "this transfer's id is already in use",
    "tampered": "refused by the bank",
    "no_leg_here": "refused by the bank",
    "too_many_legs": "too many accounts in one transfer",
    "unknown_bank": "there is no such bank in the consortium",
    "unproven_commit": "refused by the bank",
}

# Domain error codes (bank_node.domain.errors) as a customer reads them.
ERRORS = {
    "invalid_credentials": "CPF or password is wrong.",
    "unauthorized": "Please log in.",
    "invalid_document": "This CPF or CNPJ is not valid: please check the number.",
    "invalid_amount": "Invalid amount: use a positive number with at most two decimals, up to {limit}.",
    "insufficient_funds": "Insufficient funds for this withdrawal.",
    "already_exists": "This CPF is already registered at this bank: log in instead.",
    "weak_password": "The password must have 8 to 256 characters.",
    "holder_not_registered": "Every co-holder must be a customer of this bank.",
    "not_found": "Not found among your accounts at this bank.",
    "forbidden": "You are not allowed to do this.",
    "account_closed": "This account is closed.",
    "account_pending": "This account waits until every holder has accepted it.",
    "unknown_bank": "There is no such bank in the consortium.",
    "idempotency_key_reused": "This form was already sent with other data: please fill it in again.",
    "bank_unreachable": "The consortium cannot be reached right now. Please try again in a moment.",
    "invalid_input": "Some data is not valid.",
    "too_many_attempts": "Too many attempts: please wait a moment and try again.",
    "common_password": "This password is one of the most common ones and would be guessed first: choose another.",
    "password_contains_cpf": "The password must not contain your CPF.",
    "daily_limit_exceeded": "This amount is over the daily limit of this account.",
    "amount_over_limit": "This amount is over this bank's limit per operation.",
    "duplicate_leg": "The same account appears more than once in this transfer.",
    "unknown_parameter": "This address has something this bank does not know: please use the bank's own links.",
    "no_mandate": "The bank holding this account has no consent from its holder for debits started at another bank.",
    "id_in_use": "This transfer was already sent with other data: please start it again.",
}


def reason_text(code: str | None) -> str:
    return translate(REASONS.get(code or "error", REASONS["error"]))


def wait_text(seconds: int) -> str:
    """How long to wait, for a person: seconds up to two minutes, then whole minutes."""
    if seconds <= 1:
        return translate("1 second")
    if seconds < 120:
        return translate("{n} seconds", n=seconds)
    return translate("{n} minutes", n=-(-seconds // 60))


def error_text(code: str | None, detail: str = "", **params: object) -> str:
    """A domain error for the customer: the known codes in their language; for an unknown
    code, the service's own (English) explanation rather than nothing."""
    if code in ERRORS:
        return translate(ERRORS[code], **params)
    return translate("The request was refused: {detail}", detail=detail)


PT_BR: dict[str, str] = {
    'Dashboard': 'Painel',
    'Hello, {name}': 'Olá, {name}',
    'CPF': 'CPF',
    'Transfer': 'Transferir',
    'Open an account': 'Abrir conta',
    'Total in every bank of the consortium:': 'Total em todos os bancos do consórcio:',
    '(without the banks that did not answer)': '(sem os bancos que não responderam)',
    'this bank': 'este banco',
    '{bank} did not answer: its accounts cannot be shown right now. Reload the page in a moment.':
        '{bank} não respondeu: as contas de lá não podem ser mostradas agora. Recarregue a página em instantes.',
    'No account of yours.': 'Nenhuma conta sua.',
    'Account': 'Conta',
    'Balance': 'Saldo',
    'Available': 'Disponível',
    'Statement': 'Extrato',
    'Deposit or withdraw': 'Depositar ou sacar',
    'Statement ({bank})': 'Extrato ({bank})',
    'Back to the start': 'Voltar ao início',
    'Skip to content': 'Pular para o conteúdo',
    'Language': 'Idioma',
    'Main menu': 'Menu principal',
    'Log out': 'Sair',
    '{bank}, a bank of the consortium.': '{bank}, um banco do consórcio.',
    'Other banks:': 'Outros bancos:',
    'Log in': 'Entrar',
    'Log in to {bank}': 'Entrar — {bank}',
    'Password': 'Senha',
    'Not a customer yet?': 'Ainda não é cliente?',
    'Register': 'Cadastre-se',
    'Each bank of the consortium has its own customers: register at every bank where you want accounts.':
        'Cada banco do consórcio tem seus próprios clientes: cadastre-se em cada banco onde quiser ter contas.',
    'Deposit or withdraw at {bank}': 'Depositar ou sacar — {bank}',
    'You have no account at this bank yet.': 'Você ainda não tem conta neste banco.',
    'available': 'disponível',
    'Operation': 'Operação',
    'Deposit': 'Depósito',
    'Withdrawal': 'Saque',
    'Amount (R$)': 'Valor (R$)',
    'Up to {limit} per operation.': 'Até {limit} por operação.',
    'Open an account at {bank}': 'Abrir conta — {bank}',
    'Kind of account': 'Tipo de conta',
    'Individual': 'Individual',
    'Only you.': 'Só você.',
    'Joint': 'Conjunta',
    'You and one or more co-holders, each a customer of this bank.':
        'Você e um ou mais cotitulares, todos clientes deste banco.',
    'Business': 'Empresarial',
    'A company (CNPJ), operated by you and any other representatives.':
        'Uma empresa (CNPJ), movimentada por você e por outros representantes, se houver.',
    'Co-holders and representatives': 'Cotitulares e representantes',
    'CPFs of the other holders (joint) or representatives (business), one per line':
        'CPFs dos outros titulares (conjunta) ou representantes (empresarial), um por linha',
    'You are a holder already. Each CPF must belong to a customer of this bank.':
        'Você já é titular. Cada CPF precisa ser de um cliente deste banco.',
    'Company': 'Empresa',
    'CNPJ': 'CNPJ',
    'Company name': 'Razão social',
    'Open the account': 'Abrir a conta',
    'Become a customer of {bank}': 'Seja cliente — {bank}',
    'Full name': 'Nome completo',
    'Password (at least 8 characters)': 'Senha (pelo menos 8 caracteres)',
    'Password again': 'Repita a senha',
    'Already a customer?': 'Já é cliente?',
    'Holders': 'Titulares',
    'Entries': 'Lançamentos',
    'No entries yet.': 'Nenhum lançamento ainda.',
    'Amount': 'Valor',
    'Balance after': 'Saldo após',
    'These banks did not answer, so their accounts are missing here:':
        'Estes bancos não responderam, então as contas de lá não aparecem:',
    'Bank': 'Banco',
    'Choose…': 'Escolha…',
    'Account number': 'Número da conta',
    'Write an amount next to each account to use (at most {n} accounts). Leave the others empty.':
        'Informe um valor ao lado de cada conta que quer usar (no máximo {n} contas). Deixe as outras em branco.',
    '{bank} did not answer: its accounts cannot be used right now.':
        '{bank} não respondeu: as contas de lá não podem ser usadas agora.',
    'You have no account to take money from.': 'Você não tem conta de onde tirar dinheiro.',
    'Total:': 'Total:',
    'Review the transfer': 'Revisar a transferência',
    'Back to the dashboard': 'Voltar ao painel',
    'Confirm the transfer': 'Confira a transferência',
    'To': 'Para',
    'From': 'De',
    'Confirm transfer': 'Confirmar transferência',
    'Transfer done.': 'Transferência realizada.',
    'Transfer not done: no money was moved.': 'Transferência não realizada: nenhum dinheiro foi movimentado.',
    'Waiting for the banks to confirm… This page updates by itself.':
        'Aguardando a confirmação dos bancos… Esta página se atualiza sozinha.',
    'Reason:': 'Motivo:',
    '{amount} debited': '{amount} debitados',
    '{amount} credited': '{amount} creditados',
    'nothing was debited': 'nada foi debitado',
    'nothing was credited': 'nada foi creditado',
    'waiting': 'aguardando',
    'from account': 'da conta',
    'to account': 'para a conta',
    'Transfer id': 'Identificador da transferência',
    'Started': 'Iniciada em',
    'Decided': 'Decidida em',
    'New transfer': 'Nova transferência',
    'Request refused': 'Pedido recusado',
    'Service unavailable': 'Serviço indisponível',
    'The bank cannot answer right now; nothing was changed. Please try again in a moment.':
        'O banco não consegue responder agora; nada foi alterado. Tente de novo em instantes.',
    'Something went wrong': 'Algo deu errado',
    'The page could not be shown ({code}).': 'Não foi possível mostrar a página ({code}).',
    'Something went wrong on our side; nothing was changed. Please try again.':
        'Algo deu errado do nosso lado; nada foi alterado. Tente de novo.',
    'The form has expired': 'O formulário expirou',
    'This page was open for too long or did not come from this bank. Please reload it and try again.':
        'Esta página ficou aberta por muito tempo ou não veio deste banco. Recarregue-a e tente de novo.',
    'You have logged out.': 'Você saiu.',
    'Choose the kind of account.': 'Escolha o tipo de conta.',
    'Choose one of your accounts at this bank.': 'Escolha uma das suas contas neste banco.',
    'Write the amount to take from at least one of your accounts.':
        'Informe o valor a tirar de pelo menos uma das suas contas.',
    'A transfer has at most {n} source accounts.': 'Uma transferência tem no máximo {n} contas de origem.',
    'The two passwords are not the same.': 'As duas senhas não são iguais.',
    'A joint account needs the CPF of at least one co-holder.':
        'Uma conta conjunta precisa do CPF de pelo menos um cotitular.',
    'Write the company name.': 'Informe a razão social.',
    'Write the amount.': 'Informe o valor.',
    'Choose the destination bank.': 'Escolha o banco de destino.',
    'Choose the source accounts from the list.': 'Escolha as contas de origem na lista.',
    'This confirmation has expired: please review the transfer again.':
        'Esta confirmação expirou: revise a transferência de novo.',
    'Not a customer of this bank yet (every holder must register here first): {cpfs}':
        'Ainda não é cliente deste banco (todo titular precisa se cadastrar aqui antes): {cpfs}',
    'This CNPJ is not valid: please check the number.': 'Este CNPJ não é válido: confira o número.',
    'Account {number} ({kind}) is open at {bank}.': '{bank}: conta {number} ({kind}) aberta.',
    'Insufficient funds: the available amount of this account is {available}.':
        'Saldo insuficiente: o disponível desta conta é {available}.',
    'Deposit of {amount} done.': 'Depósito de {amount} realizado.',
    'Withdrawal of {amount} done.': 'Saque de {amount} realizado.',
    'Write the destination account number.': 'Informe o número da conta de destino.',
    'Welcome, {name}! Your registration is done.': 'Bem-vindo(a), {name}! Seu cadastro está feito.',
    'The CPF {cpf} is not valid.': 'O CPF {cpf} não é válido.',
    'Account not found': 'Conta não encontrada',
    'There is no account with this number among yours at this bank.':
        'Não há conta com este número entre as suas neste banco.',
    'Balance: {balance}.': 'Saldo: {balance}.',
    'This CPF is not valid: please check the number.': 'Este CPF não é válido: confira o número.',
    'insufficient funds': 'saldo insuficiente',
    'account not found': 'conta não encontrada',
    'you are not a holder of this account': 'você não é titular desta conta',
    'account closed': 'conta encerrada',
    'waiting for every holder to accept the account': 'aguardando que todos os titulares aceitem a conta',
    'the bank did not answer in time': 'o banco não respondeu a tempo',
    'the bank is out of reach right now': 'o banco está fora do ar no momento',
    'refused by the bank': 'recusada pelo banco',
    'interrupted by a restart of the bank; nothing was moved':
        'interrompida por um reinício do banco; nada foi movimentado',
    'cancelled': 'cancelada',
    'the bank could not process it': 'o banco não conseguiu processar',
    'CPF or password is wrong.': 'CPF ou senha incorretos.',
    'Please log in.': 'Entre com seu CPF e senha.',
    'This CPF or CNPJ is not valid: please check the number.': 'Este CPF ou CNPJ não é válido: confira o número.',
    'Invalid amount: use a positive number with at most two decimals, up to {limit}.':
        'Valor inválido: use um número positivo com no máximo duas casas decimais, até {limit}.',
    'Insufficient funds for this withdrawal.': 'Saldo insuficiente para este saque.',
    'This CPF is already registered at this bank: log in instead.':
        'Este CPF já está cadastrado neste banco: entre com sua senha.',
    'The password must have 8 to 256 characters.': 'A senha precisa ter de 8 a 256 caracteres.',
    'Every co-holder must be a customer of this bank.': 'Todo cotitular precisa ser cliente deste banco.',
    'Not found among your accounts at this bank.': 'Não encontrada entre as suas contas neste banco.',
    'You are not allowed to do this.': 'Você não tem permissão para isso.',
    'This account is closed.': 'Esta conta está encerrada.',
    'This account waits until every holder has accepted it.': 'Esta conta aguarda o aceite de todos os titulares.',
    'There is no such bank in the consortium.': 'Não há esse banco no consórcio.',
    'This form was already sent with other data: please fill it in again.':
        'Este formulário já foi enviado com outros dados: preencha de novo.',
    'The consortium cannot be reached right now. Please try again in a moment.':
        'O consórcio não pode ser alcançado agora. Tente de novo em instantes.',
    'Some data is not valid.': 'Alguns dados não são válidos.',
    'Transfer sent': 'Transferência enviada',
    'Transfer received': 'Transferência recebida',
    'Transfer status': 'Situação da transferência',
    'Transfer {id}': 'Transferência {id}',
    'The request was refused: {detail}': 'O pedido foi recusado: {detail}',
    "over this bank's limit per operation": 'acima do limite por operação do banco',
    'over the daily limit of this account': 'acima do limite diário da conta',
    'the same account was named twice in the transfer': 'a mesma conta apareceu duas vezes na transferência',
    'Too many attempts: please wait a moment and try again.':
        'Muitas tentativas: aguarde um pouco e tente de novo.',
    'Too many attempts: please wait {wait} and try again.': 'Muitas tentativas: aguarde {wait} e tente de novo.',
    '1 second': '1 segundo',
    '{n} seconds': '{n} segundos',
    '{n} minutes': '{n} minutos',
    'This password is one of the most common ones and would be guessed first: choose another.':
        'Esta senha é uma das mais comuns e seria a primeira a ser tentada: escolha outra.',
    'The password must not contain your CPF.': 'A senha não pode conter o seu CPF.',
    'This amount is over the daily limit of this account.': 'Este valor passa do limite diário desta conta.',
    'This amount is over the daily limit of this account: the limit is {limit} a day and {remaining} is left for today.':
        'Este valor passa do limite diário desta conta: o limite é de {limit} por dia e restam {remaining} para hoje.',
    "This amount is over this bank's limit per operation.": 'Este valor passa do limite por operação deste banco.',
    'The same account appears more than once in this transfer.':
        'A mesma conta aparece mais de uma vez nesta transferência.',
    "This address has something this bank does not know: please use the bank's own links.":
        'Este endereço tem algo que o banco não conhece: use os links do próprio banco.',
    'Page not found': 'Página não encontrada',
    'There is no page at this address. Check the address, or start again from the beginning.':
        'Não há página neste endereço. Confira o endereço ou recomece do início.',
    'Not allowed here': 'Não permitido aqui',
    'This page cannot be used this way. Go back and use the links and buttons of the page.':
        'Esta página não pode ser usada dessa forma. Volte e use os links e botões da página.',
    'A transfer can be seen at each bank that holds a part of it. Try there (you may have to log in):':
        'Uma transferência pode ser vista em cada banco que tem uma parte dela. Tente lá (talvez seja preciso entrar):',
    'ABORT decided and written to disk': 'ABORT decidido e gravado em disco',
    'Accounts of {doc} in the consortium:': 'Contas de {doc} no consórcio:',
    'All': 'Todas',
    'Back': 'Voltar',
    'COMMIT decided and written to disk': 'COMMIT decidido e gravado em disco',
    'CPF/CNPJ': 'CPF/CNPJ',
    'Change the amount': 'Alterar o valor',
    'Change the amounts': 'Alterar os valores',
    'Change the recipient': 'Trocar quem recebe',
    'Check the account': 'Verificar a conta',
    'Check the amount': 'Confira o valor',
    'Choose the account': 'Escolha a conta',
    'Choose which of these accounts receives the money.': 'Escolha qual destas contas recebe o dinheiro.',
    'Confirm deposit': 'Confirmar depósito',
    'Confirm withdrawal': 'Confirmar saque',
    'Continue': 'Continuar',
    'Dates and times in Brasília time.': 'Datas e horas no horário de Brasília.',
    'Decision sent to {bank}': 'Decisão enviada ao {bank}',
    'Deposit into account {number} at {bank}.': 'Depósito na conta {number} do {bank}.',
    'Destination': 'Destino',
    'Done': 'Realizada',
    'Download receipt (PDF)': 'Baixar comprovante (PDF)',
    'Either every part happens or none does.': 'Ou tudo acontece, ou nada acontece.',
    'Every transfer you started at {bank} or that reached your accounts here.':
        'Toda transferência que você iniciou no {bank} ou que chegou às suas contas aqui.',
    'Export CSV': 'Exportar CSV',
    'Export OFX': 'Exportar OFX',
    'Filter': 'Filtrar',
    'Find their accounts': 'Buscar as contas',
    'For example {example}.': 'Por exemplo {example}.',
    'Give consent at {bank}': 'Dar autorização no {bank}',
    'Hide balances': 'Ocultar saldos',
    'How the banks agreed': 'Como os bancos chegaram a um acordo',
    'More than this account has available ({available}).':
        'Mais do que esta conta tem disponível ({available}).',
    'My transfers': 'Minhas transferências',
    'Name': 'Nome',
    'Newest': 'Mais recentes',
    'Newest entries': 'Lançamentos mais recentes',
    'No account found for {doc}.': 'Nenhuma conta encontrada para {doc}.',
    'No entries in this period.': 'Nenhum lançamento neste período.',
    'No transfer to show.': 'Nenhuma transferência para mostrar.',
    'Not done': 'Não realizada',
    'Older': 'Mais antigas',
    'Older entries': 'Lançamentos mais antigos',
    'Or type the bank and account number': 'Ou informe o banco e o número da conta',
    'Outcome': 'Situação',
    'PREPARE sent to {bank}': 'PREPARE enviado ao {bank}',
    'Pages': 'Páginas',
    'Paid by': 'Pago por',
    'Paid to': 'Pago a',
    'Parts of the transfer': 'Partes da transferência',
    'Please correct the fields marked below.': 'Corrija os campos indicados abaixo.',
    'Processing…': 'Processando…',
    'Received': 'Recebida',
    'Recipient': 'Destinatário',
    "Recipient's CPF or CNPJ": 'CPF ou CNPJ de quem recebe',
    'Review': 'Revisão',
    'Sent': 'Enviada',
    'Started at': 'Iniciada no',
    'Steps': 'Etapas',
    'That bank needs your consent before another bank may take money from this account.':
        'Esse banco precisa da sua autorização para que outro banco tire dinheiro desta conta.',
    'The amount must be more than zero.': 'O valor precisa ser maior que zero.',
    'The end of the period must not be before its start.': 'O fim do período não pode ser antes do início.',
    'The two-phase commit of this transfer, as the banks recorded it: each bank first holds the money and votes, then the bank where it started decides, writes the decision and tells every bank.':
        'O commit em duas fases desta transferência, como os bancos o registraram: cada banco primeiro reserva o dinheiro e vota; depois o banco onde ela começou decide, grava a decisão e avisa cada banco.',
    'There is no open account {number} at {bank}: please check the number.':
        'Não há conta aberta {number} no {bank}: confira o número.',
    'This amount is over the limit of {limit} per operation.':
        'Este valor passa do limite de {limit} por operação.',
    'This bank has no record of this transfer among yours.':
        'Este banco não tem registro desta transferência entre as suas.',
    'This bank holds only this part of the transfer; the bank where it was started shows all of it.':
        'Este banco tem só esta parte da transferência; o banco onde ela começou mostra todas.',
    'This is not a valid CPF or CNPJ: please check the number.':
        'Este não é um CPF ou CNPJ válido: confira o número.',
    'Times in Brasília time.': 'Horários de Brasília.',
    'Times in Brasília time. Issued by {bank}, a bank of the consortium.':
        'Horários de Brasília. Emitido pelo {bank}, um banco do consórcio.',
    'Transfer receipt': 'Comprovante de transferência',
    'Until': 'Até',
    'Waiting': 'Aguardando',
    'Where the money comes from': 'De onde sai o dinheiro',
    'Which account receives it?': 'Qual conta recebe?',
    'Who receives it?': 'Quem recebe?',
    'Withdrawal from account {number} at {bank}.': 'Saque da conta {number} do {bank}.',
    'Write a date such as 2026-03-05.': 'Informe uma data como 2026-03-05.',
    'Write the amount with digits only, such as {example}.':
        'Informe o valor só com algarismos, como {example}.',
    'Write your full name (2 to 120 characters).': 'Informe seu nome completo (de 2 a 120 caracteres).',
    'from': 'de',
    'receipt': 'comprovante',
    'to': 'para',
    '{bank} acknowledged the decision': '{bank} confirmou o recebimento da decisão',
    '{bank} applied the decision': '{bank} aplicou a decisão',
    '{bank} did not answer, so the account cannot be checked now. Please try again in a moment.':
        '{bank} não respondeu, então a conta não pode ser verificada agora. Tente de novo em instantes.',
    '{bank} voted NO': '{bank} votou NÃO',
    '{bank} voted YES: the money is held': '{bank} votou SIM: o dinheiro está reservado',
    '“{typed}” is ambiguous: an amount has at most two decimals. For R$ {example}, type {example}.':
        '“{typed}” é ambíguo: um valor tem no máximo duas casas decimais. Para R$ {example}, digite {example}.',
    '“{typed}” is not how an amount is written here: write {example}.':
        '“{typed}” não é a forma de escrever um valor aqui: escreva {example}.',
    "this bank has no consent from the account's holder for debits started at another bank":
        'este banco não tem autorização do titular para débitos iniciados em outro banco',
    'The bank holding this account has no consent from its holder for debits started at another bank.':
        'O banco desta conta não tem autorização do titular para débitos iniciados em outro banco.',
    'You accepted account {number}: it is open.':
        'Você aceitou a conta {number}: ela está aberta.',
    'You accepted account {number}; it opens when every holder has accepted it.':
        'Você aceitou a conta {number}; ela abre quando todos os titulares aceitarem.',
    'Account {number} ({kind}) is waiting for the other holders to accept it at {bank}.':
        '{bank}: a conta {number} ({kind}) aguarda a aceitação dos outros titulares.',
    'Accounts waiting for their holders':
        'Contas aguardando os titulares',
    'An account that names several holders opens when every one of them has accepted it here; until then nothing moves on it.':
        'Uma conta com vários titulares abre quando todos a aceitam aqui; até lá, nada se movimenta nela.',
    'has not accepted yet':
        'ainda não aceitou',
    'Accept':
        'Aceitar',
    'You accepted it; waiting for the other holders.':
        'Você já aceitou; aguardando os outros titulares.',
    'over the limits the holder set for debits started at another bank':
        'acima dos limites que o titular definiu para débitos iniciados em outro banco',
    'the receiving bank will not take more from the paying bank for now':
        'o banco de destino não aceita mais créditos do banco pagador por enquanto',
    'the amounts of the transfer do not add up':
        'os valores da transferência não fecham',
    'a transfer has exactly one destination':
        'uma transferência tem exatamente um destino',
    "this transfer's id is already in use":
        'o identificador desta transferência já está em uso',
    'too many accounts in one transfer':
        'contas demais em uma só transferência',
    'there is no such bank in the consortium':
        'não há esse banco no consórcio',
    'This transfer was already sent with other data: please start it again.':
        'Esta transferência já foi enviada com outros dados: comece de novo.',
    'Consents':
        'Autorizações',
    'Consents for other banks':
        'Autorizações para outros bancos',
    'Another bank of the consortium may start a debit from your account here only if you allow it on this page. You choose the bank, the limits and until when; you can revoke it at any time.':
        'Outro banco do consórcio só pode iniciar um débito na sua conta aqui se você autorizar nesta página. Você escolhe o banco, os limites e até quando; pode revogar a qualquer momento.',
    'Limits':
        'Limites',
    'Status':
        'Situação',
    'Action':
        'Ação',
    'up to {amount} a transfer':
        'até {amount} por transferência',
    'up to {amount} a day ({used} used today)':
        'até {amount} por dia ({used} usados hoje)',
    'until {when}':
        'até {when}',
    "no limit but your balance and the bank's limits":
        'sem limite além do seu saldo e dos limites do banco',
    'active':
        'ativa',
    'revoked':
        'revogada',
    'expired':
        'vencida',
    'Revoke':
        'Revogar',
    'No other bank may start debits from your accounts here.':
        'Nenhum outro banco pode iniciar débitos nas suas contas aqui.',
    'Allow a bank':
        'Autorizar um banco',
    'You have no open account at this bank.':
        'Você não tem conta aberta neste banco.',
    'Bank that may start debits':
        'Banco que pode iniciar débitos',
    'Choose a bank':
        'Escolha um banco',
    'Your account at this bank':
        'Sua conta neste banco',
    'Choose an account':
        'Escolha uma conta',
    'Limit per transfer (optional)':
        'Limite por transferência (opcional)',
    'Limit per day (optional)':
        'Limite por dia (opcional)',
    'Valid until (optional)':
        'Válida até (opcional)',
    'Allow':
        'Autorizar',
    'Choose the bank that may start the debits.':
        'Escolha o banco que poderá iniciar os débitos.',
    '{bank} may now start debits from account {number}.':
        'O {bank} agora pode iniciar débitos na conta {number}.',
    'There is no such consent among yours.':
        'Não há essa autorização entre as suas.',
    '{bank} may no longer start debits from account {number}.':
        'O {bank} não pode mais iniciar débitos na conta {number}.',
}
