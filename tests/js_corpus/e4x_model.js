var doc = <recipients>
  <recipient id="1" email="a@x.com"><name>Ann</name></recipient>
  <recipient id="2" email="b@x.com"><name>Bob</name></recipient>
</recipients>;
logInfo(doc.recipient.length());
for each (var r in doc.recipient) logInfo(r.@id, r.@email, r.name);
logInfo(doc..name.length());
logInfo(doc.recipient.(@id == "2").name);
doc.recipient[0].@email = "changed@x.com";
logInfo(doc.recipient[0].@email);
var extra = <recipient id="3"/>;
extra.name = "Cid";
doc.appendChild(extra);
logInfo(doc.recipient.length(), doc.recipient[2].name);
var x = new XML("<a b='1'><c>text &amp; more</c></a>");
logInfo(x.@b, x.c, x.c.toXMLString());
logInfo(<r v={1 + 1}>{"<esc>"}</r>.toXMLString());
